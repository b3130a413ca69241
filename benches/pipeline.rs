//! Per-stage overhead of the instrumentation layer, as a ratio to the bare
//! stage calls in the same run (budgets in `docs/benchmarks.md`: ≤ 600 ns
//! sampled, ≤ 120 ns unsampled, ≤ 20 ns disabled, per stage), with
//! telemetry as `spanline::telemetry::init()` builds it. The variants are
//! described in `support/mod.rs`; `pipeline_instructions` counts the
//! instructions of the same code.

mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use support::{Fixture, STAGES, VARIANTS};

fn bench_overhead(c: &mut Criterion) {
    let fixture = Fixture::new();
    // Per-stage overhead is the slope between the 1- and 8-stage groups:
    // ((v8 - bare8) - (v1 - bare1)) / 7; the intercept is the per-run root.
    for (group, n) in [("pipeline_1_stage", 1), ("pipeline_8_stages", STAGES)] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(n as u64));
        for variant in VARIANTS {
            let run = fixture.runner(variant, n);
            g.bench_function(variant, |b| b.iter(&run));
        }
        g.finish();
    }
}

criterion_group!(benches, bench_overhead);
criterion_main!(benches);
