//! Cost per span on adversarial shapes at 1k, 100k and 1M spans, each in one
//! trace: a root with N sequential children of distinct names, a deep chain,
//! a wide parallel fan-out, one step whose members are fallbacks of one
//! another, parent cycles, orphans, and extreme timestamps. Each shape's
//! group holds the bare baseline (grouping the spans by trace) next to the
//! analysis plus statistics, with throughput in spans, so the report is a
//! cost per span and a ratio. Budget (DESIGN): ≥ 1M spans/s, n log n or
//! better — the per-span cost must stay flat from 1k to 1M.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use spanline_critpath::semconv as sc;
use spanline_critpath::{Span, SpanId, StatsBuilder, TraceId, analyze, group_by_trace};

const T: TraceId = TraceId(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
const T0: u64 = 1_700_000_000_000_000_000;

fn span(id: u64, parent: Option<u64>, name: &str, s: u64, e: u64) -> Span {
    Span::new(T, SpanId(id), parent.map(SpanId), name, s, e)
}

/// The shapes, by name.
const SHAPES: [&str; 7] = [
    "sequential_distinct_names",
    "deep_chain",
    "wide_fan_out",
    "fallback_chain",
    "parent_cycles",
    "orphans",
    "extreme_timestamps",
];

fn generate(shape: &str, n: u64) -> Vec<Span> {
    let mut v = Vec::with_capacity(n as usize);
    let end = T0 + n * 1_000 + 1_000;
    v.push(span(1, None, "root", T0, end));
    match shape {
        // The quadratic case: every child its own key.
        "sequential_distinct_names" => {
            for i in 1..n {
                let s = T0 + i * 1_000;
                v.push(span(1 + i, Some(1), &format!("child-{i}"), s, s + 900));
            }
        }
        "deep_chain" => {
            for i in 1..n {
                v.push(span(1 + i, Some(i), "link", T0 + i, end - i));
            }
        }
        // One parallel step with N branches.
        "wide_fan_out" => {
            for i in 1..n {
                v.push(
                    span(
                        1 + i,
                        Some(1),
                        "branch",
                        T0 + 10,
                        T0 + 10 + (i * 7919) % 100_000,
                    )
                    .with_attr(sc::STAGE_NAME, "fan")
                    .with_attr(sc::STEP_INDEX, 0i64)
                    .with_attr(sc::PARALLEL_BRANCH, i as i64),
                );
            }
        }
        // One step whose members each stand in for the previous stage
        // (the lane lookup that used to search the step per member).
        "fallback_chain" => {
            for i in 1..n {
                let s = T0 + i * 1_000;
                v.push(
                    span(1 + i, Some(1), "try", s, s + 900)
                        .with_attr(sc::STEP_INDEX, 0i64)
                        .with_attr(sc::STAGE_NAME, format!("stage-{i}").as_str())
                        .with_attr(sc::FALLBACK_FOR, format!("stage-{}", i - 1).as_str()),
                );
            }
        }
        // N/2 two-span cycles, each a detached tree.
        "parent_cycles" => {
            let mut i = 1;
            while i + 1 < n {
                let s = T0 + i;
                v.push(span(1 + i, Some(2 + i), "a", s, s + 10));
                v.push(span(2 + i, Some(1 + i), "b", s, s + 10));
                i += 2;
            }
        }
        // Every span's parent is missing: N detached trees and N diagnostics.
        "orphans" => {
            for i in 1..n {
                v.push(span(1 + i, Some(n + 10 + i), "orphan", T0 + i, T0 + i + 10));
            }
        }
        // 0, u64::MAX, start > end, under a root spanning everything.
        "extreme_timestamps" => {
            v[0] = span(1, None, "root", 0, u64::MAX);
            let times = [0, 1, u64::MAX, u64::MAX - 1, 1 << 63, T0];
            for i in 1..n {
                let (s, e) = (times[(i % 6) as usize], times[((i * 7) % 6) as usize]);
                v.push(span(1 + i, Some(1 + i / 2), "x", s, e));
            }
        }
        other => unreachable!("unknown shape {other}"),
    }
    v
}

fn bench(c: &mut Criterion) {
    for shape in SHAPES {
        let mut group = c.benchmark_group(format!("scaling/{shape}"));
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        for n in [1_000u64, 100_000, 1_000_000] {
            let spans = generate(shape, n);
            group.throughput(Throughput::Elements(spans.len() as u64));
            group.measurement_time(Duration::from_secs(if n >= 1_000_000 { 6 } else { 2 }));
            group.bench_with_input(
                BenchmarkId::new("baseline_group_by_trace", n),
                &spans,
                |b, spans| b.iter(|| black_box(group_by_trace(black_box(spans))).len()),
            );
            group.bench_with_input(
                BenchmarkId::new("analyze_and_stats", n),
                &spans,
                |b, spans| {
                    b.iter(|| {
                        let mut stats = StatsBuilder::new();
                        for r in analyze(black_box(spans)) {
                            stats.add(&r);
                        }
                        black_box(stats.finish())
                    })
                },
            );
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
