//! `diff`: which key explains a change in trace latency, with bootstrap intervals.

mod common;

use common::*;
use spanline_critpath::diff::{Presence, QUANTILES};
use spanline_critpath::{DiffBuilder, DiffError, DiffOptions, SegmentType, Side, TraceReport};

const STAGES: [&str; 5] = ["normalize", "embed", "retrieve", "rerank", "generate"];

/// `n` runs; `generate` takes `generate_ms`, the other stages their usual
/// times; every stage ±5 %.
fn runs(seed: u64, n: usize, generate_ms: u64) -> Vec<TraceReport> {
    let mut j = Jitter(seed);
    (0..n)
        .map(|i| {
            let times = [20, 50, 300, 100, generate_ms];
            let stages: Vec<(&str, u64)> = STAGES
                .iter()
                .zip(times)
                .map(|(&s, ms)| (s, j.around(ms, 5)))
                .collect();
            sequential_run(i as u128 + (u128::from(seed) << 64), &stages).analyze()
        })
        .collect()
}

fn diff(base: &[TraceReport], cur: &[TraceReport], opts: &DiffOptions) -> spanline_critpath::Diff {
    let mut b = DiffBuilder::new();
    for r in base {
        b.add(Side::Baseline, r);
    }
    for r in cur {
        b.add(Side::Current, r);
    }
    b.finish(opts).expect("diff")
}

#[test]
fn a_stage_going_from_1_2_s_to_7_s_is_named_as_the_cause() {
    let base = runs(1, 200, 1200);
    let cur = runs(2, 200, 7000);
    let d = diff(&base, &cur, &DiffOptions::default());
    assert_eq!(d.baseline.traces, 200);
    assert_eq!(d.current.traces, 200);
    assert_eq!(d.rows[0].key.as_ref(), "generate", "ranked first");
    assert_eq!(d.rows[0].segment_type, SegmentType::Stage);
    for (qi, q) in d.quantiles.iter().enumerate() {
        assert_eq!(q.quantile, QUANTILES[qi].1);
        assert_eq!(
            q.causes.iter().map(|c| c.as_ref()).collect::<Vec<_>>(),
            ["generate"],
            "{}: {:?}",
            q.quantile,
            d.rows
        );
        // The latency moved by ~5.8 s, with an interval around it.
        assert!(
            (5_500 * MS..6_300 * MS).contains(&(q.delta_ns as u64)),
            "{q:?}"
        );
        assert!(
            q.ci.lo_ns > 5_000 * MS as i64 && q.ci.hi_ns < 6_500 * MS as i64,
            "{q:?}"
        );
        let g = &d.rows[0].changes[qi];
        assert!(g.cause);
        assert!(
            (5_500 * MS..6_300 * MS).contains(&(g.delta_ns as u64)),
            "{g:?}"
        );
        let ci = g.ci.expect("resampled");
        assert!(
            ci.lo_ns > 0 && ci.lo_ns <= g.delta_ns && g.delta_ns <= ci.hi_ns,
            "{ci:?}"
        );
        // The deltas of the keys add up to the change of the band's mean.
        let sum: i64 = d.rows.iter().map(|r| r.changes[qi].delta_ns).sum();
        assert!(
            (sum - q.explained_ns).abs() <= d.rows.len() as i64,
            "{sum} vs {q:?}"
        );
        // No other key is a cause, and each changed far less than generate.
        for r in &d.rows[1..] {
            assert!(!r.changes[qi].cause, "{r:?}");
            assert!(r.changes[qi].delta_ns.unsigned_abs() < 40 * MS, "{r:?}");
        }
    }
    assert!(d.rows.iter().all(|r| r.presence == Presence::Both));
    assert!(d.notes.is_empty(), "{:?}", d.notes);
}

#[test]
fn nothing_changed_gives_intervals_containing_zero_and_no_cause() {
    let base = runs(1, 200, 1200);
    let d = diff(&base, &base, &DiffOptions::default());
    for q in &d.quantiles {
        assert!(q.causes.is_empty(), "{q:?}");
        assert_eq!(q.delta_ns, 0);
        assert!(q.ci.lo_ns <= 0 && q.ci.hi_ns >= 0, "{q:?}");
        assert!(
            q.ci.hi_ns > q.ci.lo_ns,
            "a real interval, not a point: {q:?}"
        );
    }
    for r in &d.rows {
        for c in &r.changes {
            let ci = c.ci.expect("resampled");
            assert_eq!(c.delta_ns, 0, "{r:?}");
            assert!(ci.lo_ns <= 0 && ci.hi_ns >= 0, "{r:?}");
            assert!(!c.cause);
        }
    }
    // A stage with jitter has an interval of some width.
    let generate = d.rows.iter().find(|r| &*r.key == "generate").expect("row");
    let ci = generate.changes[0].ci.expect("resampled");
    assert!(ci.hi_ns - ci.lo_ns > MS as i64, "{ci:?}");

    // Two independent samples of the same system: no cause either.
    let again = runs(3, 200, 1200);
    let d = diff(&base, &again, &DiffOptions::default());
    for q in &d.quantiles {
        assert!(q.causes.is_empty(), "{q:?} {:?}", d.rows);
    }
}

#[test]
fn the_same_seed_gives_the_same_intervals() {
    let base = runs(1, 50, 1200);
    let cur = runs(2, 50, 1500);
    let opts = DiffOptions {
        resamples: 300,
        ..DiffOptions::default()
    };
    let a = diff(&base, &cur, &opts);
    let b = diff(&base, &cur, &opts);
    assert_eq!(a, b);
    let c = diff(&base, &cur, &DiffOptions { seed: 99, ..opts });
    assert_ne!(
        a.quantiles[0].ci, c.quantiles[0].ci,
        "another seed, other draws"
    );
}

#[test]
fn mismatched_key_sets_are_reported() {
    let mut j = Jitter(5);
    let base: Vec<TraceReport> = (0..30)
        .map(|i| sequential_run(i, &[("embed", j.around(50, 5)), ("old-rerank", 20)]).analyze())
        .collect();
    let cur: Vec<TraceReport> = (0..30)
        .map(|i| sequential_run(i, &[("embed", j.around(50, 5)), ("new-rerank", 90)]).analyze())
        .collect();
    let d = diff(&base, &cur, &DiffOptions::default());
    let row = |k: &str| d.rows.iter().find(|r| &*r.key == k).expect("row");
    assert_eq!(row("old-rerank").presence, Presence::BaselineOnly);
    assert_eq!(row("new-rerank").presence, Presence::CurrentOnly);
    assert_eq!(row("embed").presence, Presence::Both);
    assert!(d.quantiles[0].causes.iter().any(|c| &**c == "new-rerank"));
    let notes = d.notes.join("\n");
    assert!(
        notes.contains("only in the current input (new): new-rerank"),
        "{notes}"
    );
    assert!(
        notes.contains("only in the baseline (gone): old-rerank"),
        "{notes}"
    );
}

#[test]
fn empty_sides_and_bad_options_are_typed_errors() {
    let base = runs(1, 5, 1200);
    let mut b = DiffBuilder::new();
    for r in &base {
        b.add(Side::Baseline, r);
    }
    assert_eq!(
        b.finish(&DiffOptions::default()),
        Err(DiffError::NoTraces(Side::Current))
    );
    let b = DiffBuilder::new();
    assert_eq!(
        b.finish(&DiffOptions::default()),
        Err(DiffError::NoTraces(Side::Baseline))
    );
    for bad in [
        DiffOptions {
            confidence: 1.0,
            ..DiffOptions::default()
        },
        DiffOptions {
            confidence: f64::NAN,
            ..DiffOptions::default()
        },
        DiffOptions {
            resamples: 0,
            ..DiffOptions::default()
        },
        DiffOptions {
            min_effect: -0.1,
            ..DiffOptions::default()
        },
        DiffOptions {
            band: 0.0,
            ..DiffOptions::default()
        },
    ] {
        let mut b = DiffBuilder::new();
        b.add(Side::Baseline, &base[0]);
        b.add(Side::Current, &base[1]);
        assert!(
            matches!(b.finish(&bad), Err(DiffError::BadOption { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn one_trace_per_side_still_gives_an_answer() {
    let base = runs(1, 1, 1200);
    let cur = runs(2, 1, 7000);
    let d = diff(&base, &cur, &DiffOptions::default());
    assert_eq!(d.rows[0].key.as_ref(), "generate");
    // With one trace per side every resample is that trace: a point interval.
    let c = &d.rows[0].changes[0];
    assert_eq!(
        c.ci.map(|ci| (ci.lo_ns, ci.hi_ns)),
        Some((c.delta_ns, c.delta_ns))
    );
    assert!(
        d.notes.iter().any(|n| n.contains("only 1 trace")),
        "{:?}",
        d.notes
    );
}
