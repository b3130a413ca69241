//! `whatif`: projected latency and critical-path shares when a key is scaled.

mod common;

use common::*;
use spanline_critpath::semconv as sc;
use spanline_critpath::whatif::project;
use spanline_critpath::{Scale, Scales, SpanKind, TraceReport, WhatIf, WhatIfBuilder, WhatIfError};

fn whatif(traces: &[&Trace], specs: &[&str]) -> Result<WhatIf, WhatIfError> {
    let mut b = WhatIfBuilder::new(Scales::parse(specs)?);
    for t in traces {
        let refs: Vec<_> = t.spans.iter().collect();
        b.add(&refs, &t.analyze());
    }
    b.finish()
}

fn projected(t: &Trace, specs: &[&str]) -> TraceReport {
    let refs: Vec<_> = t.spans.iter().collect();
    let p = project(&refs, &t.analyze(), &Scales::parse(specs).expect("scales"));
    let refs: Vec<_> = p.spans.iter().collect();
    spanline_critpath::analyze_trace(&refs).expect("projected trace")
}

fn share(w: &WhatIf, key: &str) -> (f64, f64) {
    let s = w.shares.iter().find(|s| &*s.key == key).expect("key");
    (s.before, s.after)
}

#[test]
fn halving_a_stage_on_the_path_shortens_the_trace_by_half_its_contribution() {
    let t = sample_pipeline(1);
    let r = t.analyze();
    let chat = r
        .contributions
        .iter()
        .find(|c| &*c.key == "chat")
        .expect("chat");
    assert_eq!(chat.duration_ns, 12 * MS);
    let w = whatif(&[&t], &["chat=0.5"]).expect("whatif");
    assert_eq!(w.before.p50, 100 * MS);
    assert_eq!(w.after.p50, 94 * MS);
    assert_eq!(
        (w.changed_traces, w.exact_traces, w.approximate_traces),
        (1, 1, 0)
    );
    assert_eq!(w.keys[0].exact_traces, 1);
    let (b, a) = share(&w, "chat");
    assert!(
        (b - 0.12).abs() < 1e-9 && (a - 6.0 / 94.0).abs() < 1e-9,
        "{b} {a}"
    );
    // the projected path still tiles the (shorter) root
    let p = projected(&t, &["chat=0.5"]);
    assert_tiles(&p);
    assert_eq!(p.duration_ns, 94 * MS);

    // a failed primary and its fallback are both on the path: halving the
    // primary (19 ms) moves the fallback and everything after it
    let w = whatif(&[&t], &["keyword=0.5"]).expect("whatif");
    assert_eq!(w.after.p50, 100 * MS - 9_500_000);
}

#[test]
fn scale_one_reproduces_the_trace() {
    let t = sample_pipeline(1);
    let before = t.analyze();
    let after = projected(&t, &["dense=1", "fuse=1.0"]);
    assert_eq!(path(&after), path(&before));
    assert_eq!(after.contributions, before.contributions);
}

#[test]
fn a_parallel_branch_with_slack_changes_nothing_until_it_is_the_longest() {
    // dense [12,50] (38 ms) ∥ bm25 [12,30] (18 ms): bm25 has 20 ms of slack
    let t = sample_pipeline(1);
    for f in ["1.5", "2", "2.1"] {
        let w = whatif(&[&t], &[&format!("bm25={f}")]).expect("whatif");
        assert_eq!(w.after.p50, 100 * MS, "bm25 × {f} still fits under dense");
        assert_eq!(share(&w, "bm25").1, 0.0);
    }
    // × 2.5: 45 ms, 7 ms longer than dense → the trace is 7 ms longer and
    // bm25 is on the path
    let w = whatif(&[&t], &["bm25=2.5"]).expect("whatif");
    assert_eq!(w.after.p50, 107 * MS);
    assert!((share(&w, "bm25").1 - 45.0 / 107.0).abs() < 1e-9);
    assert_eq!(share(&w, "dense").1, 0.0);
    assert_eq!(w.exact_traces, 1);

    // the other way round: halving dense (19 ms) still beats bm25 (18 ms)…
    let w = whatif(&[&t], &["dense=0.5"]).expect("whatif");
    assert_eq!(w.after.p50, 81 * MS);
    // …but at 0.4 (15.2 ms) bm25 becomes the longest branch: only 20 ms saved
    let w = whatif(&[&t], &["dense=0.4"]).expect("whatif");
    assert_eq!(w.after.p50, 80 * MS);
    assert!(share(&w, "bm25").1 > 0.2);
}

/// A stage calling a remote stage over Kafka request/reply:
/// root [0,100] → retrieve [5,95] → hop [10,90] → send [11,12] →
/// queue [11,41] + process [41,80] → search [45,75].
fn kafka_trace() -> Trace {
    let mut t = Trace::new(7);
    let root = t.span(None, "invoke_workflow rag", 0, 100);
    let stage = t.stage(root, "spanline.stage retrieve", "retrieve", 0, 5, 95);
    let hop = t.span(Some(stage), "rag.retrieve remote-stage", 10, 90);
    t.attr(hop, sc::SEGMENT_TYPE, "hop")
        .kind(hop, SpanKind::Client);
    let send = t.span(Some(hop), "send rag.retrieve", 11, 12);
    t.kind(send, SpanKind::Producer);
    let q = t.span(Some(send), "spanline.queue rag.retrieve", 11, 41);
    t.attr(q, sc::SEGMENT_TYPE, "queue");
    let process = t.span(Some(send), "process rag.retrieve", 41, 80);
    t.kind(process, SpanKind::Consumer);
    let search = t.span(Some(process), "spanline.stage search", 45, 75);
    t.attr(search, sc::STAGE_NAME, "search")
        .attr(search, sc::STEP_INDEX, 0i64)
        .attr(search, sc::STEP_DEPENDS_ON, Vec::<i64>::new());
    t
}

#[test]
fn scaling_a_queue_moves_the_consumer_and_everything_after_it() {
    let t = kafka_trace();
    let r = t.analyze();
    assert_eq!(r.queue_ns(), 30 * MS);
    let w = whatif(&[&t], &["spanline.queue rag.retrieve=0"]).expect("whatif");
    assert_eq!(w.after.p50, 70 * MS);
    assert_eq!(share(&w, "spanline.queue rag.retrieve").1, 0.0);
    assert_eq!(w.exact_traces, 1, "queue → consumer is structure: {w:?}");
    let w = whatif(&[&t], &["spanline.queue rag.retrieve=2"]).expect("whatif");
    assert_eq!(w.after.p50, 130 * MS);
    // the remote stage and the hop scale the same way
    let w = whatif(&[&t], &["search=0.5", "rag.retrieve remote-stage=2"]).expect("whatif");
    // search 30 → 15; the hop's own time (1 + 4 + 5 + 10 = 20 ms) → 40
    assert_eq!(w.after.p50, 100 * MS - 15 * MS + 20 * MS);
    assert_eq!(w.approximate_traces, 0);
}

#[test]
fn foreign_spans_are_projected_from_timestamps_and_say_so() {
    let mut t = Trace::new(9);
    let root = t.span(None, "GET /answer", 0, 100);
    t.span(Some(root), "a", 10, 40);
    t.span(Some(root), "b", 50, 90);
    let w = whatif(&[&t], &["a=0.5"]).expect("whatif");
    // b is assumed to have waited for a: a [10,25], b [35,75], root ends at 85
    assert_eq!(w.after.p50, 85 * MS);
    assert_eq!((w.exact_traces, w.approximate_traces), (0, 1));
    assert_eq!(w.keys[0].approximate_traces, 1);
    assert_eq!(w.approximate_at, vec![("GET /answer".into(), 1)]);
    assert_eq!(w.approximate_examples, vec![t.id]);
    // a trace the scale does not touch is neither
    let other = sample_pipeline(2);
    let w = whatif(&[&t, &other], &["a=0.5"]).expect("whatif");
    assert_eq!((w.traces, w.changed_traces), (2, 1));
}

#[test]
fn factors_and_keys_are_validated() {
    let bad_factor =
        |spec: &str| matches!(spec.parse::<Scale>(), Err(WhatIfError::BadFactor { .. }));
    for spec in [
        "chat=-1",
        "chat=NaN",
        "chat=inf",
        "chat=-0.5",
        "chat=abc",
        "chat=",
    ] {
        assert!(bad_factor(spec), "{spec}");
    }
    for spec in ["chat", "=2", " =2", ""] {
        assert!(
            matches!(spec.parse::<Scale>(), Err(WhatIfError::BadSpec { .. })),
            "{spec}"
        );
    }
    let ok: Scale = "spanline.queue a=b=0.25"
        .parse()
        .expect("split at the last =");
    assert_eq!((&*ok.key, ok.factor), ("spanline.queue a=b", 0.25));
    assert_eq!(Scales::parse::<&str>(&[]), Err(WhatIfError::NoScale));
    assert!(matches!(
        Scales::parse(&["chat=1", "chat=2"]),
        Err(WhatIfError::DuplicateKey { .. })
    ));
    let t = sample_pipeline(1);
    match whatif(&[&t], &["chat=0.5", "nope=0.5"]) {
        Err(WhatIfError::UnknownKey { key, traces, known }) => {
            assert_eq!((key.as_str(), traces), ("nope", 1));
            assert!(known.iter().any(|k| k == "chat"), "{known:?}");
        }
        other => panic!("expected UnknownKey, got {other:?}"),
    }
    let empty = WhatIfBuilder::new(Scales::parse(&["chat=2"]).expect("scales"));
    assert_eq!(empty.finish(), Err(WhatIfError::NoTraces));
}

#[test]
fn extreme_factors_and_times_do_not_panic() {
    let t = sample_pipeline(1);
    let w = whatif(&[&t], &["chat=1e300"]).expect("whatif");
    assert!(w.after.p50 > w.before.p50);
    let mut t = Trace::new(3);
    let root = t.span(None, "root", 0, 10);
    t.get(root).end_ns = u64::MAX;
    let c = t.span(Some(root), "child", 1, 5);
    t.get(c).end_ns = u64::MAX - 1;
    let w = whatif(&[&t], &["child=1000"]).expect("whatif");
    assert_eq!(w.after.max, u64::MAX - t.spans[0].start_ns);
}
