//! Readable reports: runs of critical-path slivers (segments under 1% of the
//! trace each) are shown as one line with a count and a total; the full list
//! stays in `all_segments` and in the JSON.

use spanline_critpath::render::{self, Limits, PathLine, path_lines};
use spanline_critpath::semconv as sc;
use spanline_critpath::{SegmentType, Span, SpanId, TraceId, TraceReport, analyze};

const US: u64 = 1_000;
const T0: u64 = 1_700_000_000_000_000_000;

/// A RAG-shaped trace (times in µs): four stages that matter, tiny stages
/// and orchestration gaps of 5–10 µs between them, and one untyped helper.
fn rag_like() -> TraceReport {
    let t = TraceId(0x0af7651916cd43dd8448eb211c80319c);
    let root = SpanId(1);
    let mut spans = vec![Span::new(
        t,
        root,
        None,
        "invoke_workflow rag",
        T0,
        T0 + 100_000 * US,
    )];
    // an untyped helper: its time is `self`, like the root's gaps around it
    spans.push(Span::new(
        t,
        SpanId(2),
        Some(root),
        "tokenize",
        T0 + 5 * US,
        T0 + 30 * US,
    ));
    let stages: [(&str, u64, u64); 6] = [
        ("embed", 40, 20_040),
        ("dense", 20_050, 60_050),
        ("fuse", 60_060, 60_080),
        ("rerank", 60_090, 70_090),
        ("identity", 70_100, 70_110),
        ("chat", 70_120, 99_990),
    ];
    for (i, (name, s, e)) in stages.iter().enumerate() {
        let deps: Vec<i64> = if i == 0 { vec![] } else { vec![i as i64 - 1] };
        spans.push(
            Span::new(
                t,
                SpanId(10 + i as u64),
                Some(root),
                &format!("spanline.stage {name}"),
                T0 + s * US,
                T0 + e * US,
            )
            .with_attr(sc::STAGE_NAME, *name)
            .with_attr(sc::STEP_INDEX, i as i64)
            .with_attr(sc::STEP_DEPENDS_ON, deps),
        );
    }
    analyze(&spans).remove(0)
}

/// `(count, type)` for merged lines, `(1, type)` for single segments.
fn shape(lines: &[PathLine<'_>]) -> Vec<(usize, Option<SegmentType>)> {
    lines
        .iter()
        .map(|l| match l {
            PathLine::Segment(s) => (1, Some(s.segment_type)),
            PathLine::Merged(m) => (m.count, m.segment_type),
        })
        .collect()
}

#[test]
fn runs_of_slivers_become_one_line_with_count_and_total() {
    let r = rag_like();
    assert_eq!(r.segments.len(), 15);
    let lines = path_lines(&r.segments, 0.01);
    use SegmentType::{SelfTime, Stage};
    assert_eq!(
        shape(&lines),
        vec![
            (3, Some(SelfTime)), // root gap, tokenize, root gap
            (1, Some(Stage)),    // embed
            (1, Some(SelfTime)), // a single sliver stays as it is
            (1, Some(Stage)),    // dense
            (3, None),           // gap, fuse, gap: mixed types
            (1, Some(Stage)),    // rerank
            (3, None),           // gap, identity, gap
            (1, Some(Stage)),    // chat
            (1, Some(SelfTime)), // the tail
        ]
    );
    // The lines tile the path: totals add up to the trace duration.
    let mut at = r.start_ns;
    let mut total = 0;
    for l in &lines {
        let (s, e, d) = match l {
            PathLine::Segment(s) => (s.start_ns, s.end_ns, s.duration_ns),
            PathLine::Merged(m) => (m.start_ns, m.end_ns, m.duration_ns),
        };
        assert_eq!(s, at);
        at = e;
        total += d;
    }
    assert_eq!(total, r.duration_ns);
    let PathLine::Merged(first) = &lines[0] else {
        panic!("first line is merged")
    };
    assert_eq!(first.duration_ns, 40 * US);
    assert!((first.share - 0.0004).abs() < 1e-12);
    // A merged run of one stage's slivers keeps the stage; mixed runs do not.
    assert_eq!(first.stage, None);
}

#[test]
fn text_shows_the_merged_view_and_all_segments_on_request() {
    let r = rag_like();
    let text = render::text::trace(&r);
    assert!(text.contains(
        "critical path (15 segments; 9 of them, each under 1% of the trace, shown as 3 lines — "
    ));
    assert_eq!(text.matches("… 3 segments under 1% each").count(), 3);
    assert!(!text.contains("spanline.stage identity"), "{text}");
    assert!(text.contains("spanline.stage chat"));

    let all = Limits {
        all_segments: true,
        ..Limits::default()
    };
    let full = render::text::trace_with(&r, &all);
    assert!(!full.contains("segments under 1% each"));
    for name in ["tokenize", "spanline.stage fuse", "spanline.stage identity"] {
        assert!(full.contains(name), "{name} listed");
    }

    // HTML: the same merged table; JSON: every segment.
    let html = render::html::page("rag", Some(&r), None);
    assert_eq!(html.matches("… 3 segments under 1% each").count(), 3);
    let v: serde_json::Value = serde_json::from_str(&render::json(&r)).expect("valid JSON");
    assert_eq!(v["segments"].as_array().map(Vec::len), Some(15));
}

#[test]
fn a_threshold_of_zero_merges_nothing() {
    let r = rag_like();
    let lines = path_lines(&r.segments, 0.0);
    assert_eq!(lines.len(), r.segments.len());
    assert!(lines.iter().all(|l| matches!(l, PathLine::Segment(_))));
}
