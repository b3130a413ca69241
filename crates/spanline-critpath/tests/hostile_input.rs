//! Extreme and hostile values through the analysis and all three renderers
//! (terminal text, JSON, HTML): no panic, bounded output, valid JSON, no raw
//! control or bidi characters, finite coordinates, and the path still tiles
//! the root. A small xorshift generator with a fixed seed makes the cases.

use spanline_critpath::analyze::MAX_TRACE_DIAGNOSTICS;
use spanline_critpath::render::{self, Limits, is_unsafe_char};
use spanline_critpath::semconv as sc;
use spanline_critpath::{
    DiagnosticKind, Format, Span, SpanId, SpanKind, TraceId, TraceReport, analyze, load_reader,
    stats,
};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Names that try to spoof or break a display.
fn hostile_names() -> Vec<String> {
    vec![
        "plain".into(),
        "invoice\u{202E}fdp.exe".into(),
        "\u{2066}isolated\u{2069}".into(),
        "\u{1b}[31mred\u{1b}[0m".into(),
        "bell\u{7}".into(),
        "next\u{85}line".into(),
        "nul\u{0}byte".into(),
        "\u{200F}rlm\u{200E}lrm\u{061C}".into(),
        "zero\u{200B}width\u{FEFF}".into(),
        "line\u{2028}sep".into(),
        "<script>alert(1)</script>&\"'".into(),
        "x".repeat(10_000),
        String::new(),
    ]
}

const TIMES: [u64; 8] = [
    0,
    1,
    1_000,
    u64::MAX,
    u64::MAX - 1,
    1 << 63,
    1_700_000_000_000_000_000,
    1_700_000_000_000_000_500,
];

fn time(rng: &mut Rng) -> u64 {
    if rng.chance(50) {
        *rng.pick(&TIMES)
    } else {
        rng.next()
    }
}

/// One random trace of up to `max` spans: duplicate ids, self-parents,
/// cycles, missing parents, start > end, extreme times, structural
/// attributes in random combinations.
fn random_trace(rng: &mut Rng, max: u64) -> Vec<Span> {
    let names = hostile_names();
    let trace = TraceId(u128::from(rng.next()) << 64 | 1);
    let n = 1 + rng.below(max);
    let mut spans = Vec::new();
    for i in 0..n {
        // ids from a small range, so duplicates and cycles happen
        let id = SpanId(1 + rng.below(n + 2));
        let parent = match rng.below(10) {
            0 | 1 => None,
            2 => Some(id),                           // its own parent
            3 => Some(SpanId(1_000_000 + i)),        // missing
            _ => Some(SpanId(1 + rng.below(n + 2))), // anything: cycles happen
        };
        let (mut s, mut e) = (time(rng), time(rng));
        if rng.chance(60) && s > e {
            std::mem::swap(&mut s, &mut e);
        }
        let mut span = Span::new(trace, id, parent, rng.pick(&names).as_str(), s, e);
        span.kind = *rng.pick(&[
            SpanKind::Internal,
            SpanKind::Client,
            SpanKind::Server,
            SpanKind::Producer,
            SpanKind::Consumer,
        ]);
        if rng.chance(50) {
            span = span.with_attr(sc::STEP_INDEX, rng.below(4) as i64);
        }
        if rng.chance(30) {
            let deps: Vec<i64> = (0..rng.below(4)).map(|_| rng.below(4) as i64).collect();
            span = span.with_attr(sc::STEP_DEPENDS_ON, deps);
        }
        if rng.chance(40) {
            span = span.with_attr(sc::STAGE_NAME, rng.pick(&names).as_str());
        }
        if rng.chance(20) {
            span = span.with_attr(sc::PARALLEL_BRANCH, rng.below(3) as i64);
        }
        if rng.chance(15) {
            span = span.with_attr(sc::BATCH_INDEX, rng.below(3) as i64);
        }
        if rng.chance(15) {
            span = span.with_attr(sc::FALLBACK_FOR, rng.pick(&names).as_str());
        }
        if rng.chance(10) {
            span = span.with_attr(sc::STEP_BLOCKING, false);
        }
        if rng.chance(20) {
            span = span.with_attr(sc::SEGMENT_TYPE, *rng.pick(&["hop", "queue", "stage", "?"]));
        }
        if rng.chance(10) {
            span.service_name = Some(rng.pick(&names).as_str().into());
        }
        spans.push(span);
    }
    spans
}

/// No raw unsafe character (newlines aside, which the renderers write).
fn assert_no_unsafe(what: &str, s: &str) {
    if let Some(c) = s.chars().find(|&c| c != '\n' && is_unsafe_char(c)) {
        panic!("{what} holds a raw {:?}", c);
    }
}

/// The path tiles the root: contiguous, in order, summing to the duration.
fn assert_tiles(r: &TraceReport) {
    let sum: u64 = r.segments.iter().map(|s| s.duration_ns).sum();
    assert_eq!(sum, r.duration_ns, "segments sum to the trace duration");
    let mut at = r.start_ns;
    for s in &r.segments {
        assert_eq!(s.start_ns, at, "segments are contiguous");
        assert_eq!(s.end_ns - s.start_ns, s.duration_ns);
        at = s.end_ns;
    }
    if !r.segments.is_empty() {
        assert_eq!(at, r.end_ns);
    }
}

/// Everything rendered for one report, checked.
fn render_all(r: &TraceReport) {
    let all = Limits {
        all_segments: true,
        ..Limits::default()
    };
    let texts = [render::text::trace(r), render::text::trace_with(r, &all)];
    for t in &texts {
        assert_no_unsafe("text", t);
    }
    // Default text: at most 200 rows per list, names cut: bounded whatever the input.
    assert!(
        texts[0].lines().count() <= 5 * 200 + 40,
        "{} lines",
        texts[0].lines().count()
    );
    assert!(
        texts[0].len() <= 1 << 20,
        "{} bytes of text",
        texts[0].len()
    );

    let st = stats([r]);
    let html = render::html::page("t\u{202E}", Some(r), Some(&st));
    assert_no_unsafe("html", &html);
    assert!(
        !html.contains("NaN") && !html.contains("inf"),
        "finite coordinates"
    );
    let drawn = html.matches("<rect class=\"span").count();
    assert_eq!(drawn, r.spans.len().min(2_000), "one bar per drawn span");
    assert!(html.len() <= 8 << 20, "{} bytes of HTML", html.len());
    assert_no_unsafe("stats text", &render::text::stats(&st));

    for json in [render::json(r), render::json(&st)] {
        assert_no_unsafe("json", &json);
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert!(v.is_object());
    }
    // JSON keeps the exact names (escaped, not replaced).
    let v: serde_json::Value = serde_json::from_str(&render::json(r)).expect("valid JSON");
    assert_eq!(v["root_name"].as_str(), Some(&*r.root_name));
}

#[test]
fn random_hostile_traces_render_safely_and_the_path_tiles_the_root() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut reports = 0;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..250 {
        let spans = random_trace(&mut rng, 40);
        for r in analyze(&spans) {
            seen.extend(r.diagnostics.iter().map(|d| d.kind));
            assert_tiles(&r);
            for d in &r.detached {
                let sum: u64 = d.segments.iter().map(|s| s.duration_ns).sum();
                assert_eq!(sum, d.duration_ns, "detached paths tile their roots");
            }
            render_all(&r);
            reports += 1;
        }
    }
    assert!(reports >= 250);
    // The generator reaches every kind of damage the analyser repairs.
    for k in [
        DiagnosticKind::DuplicateSpanId,
        DiagnosticKind::Orphan,
        DiagnosticKind::ParentCycle,
        DiagnosticKind::EndBeforeStart,
        DiagnosticKind::ClockSkew,
        DiagnosticKind::NoRoot,
    ] {
        assert!(seen.contains(&k), "no {k:?} generated");
    }
}

#[test]
fn largest_timestamps_render_without_hang_or_panic() {
    let t = TraceId(7);
    let cases: [(u64, u64); 4] = [
        (u64::MAX, u64::MAX),
        (0, u64::MAX),
        (u64::MAX - 1, u64::MAX),
        (u64::MAX, 0),
    ];
    for (s, e) in cases {
        let spans = vec![
            Span::new(t, SpanId(1), None, "root", s, e),
            Span::new(t, SpanId(2), Some(SpanId(1)), "child", s, e),
        ];
        let r = &analyze(&spans)[0];
        assert_tiles(r);
        render_all(r);
        let html = render::html::waterfall_svg(r);
        // The axis has a bounded number of ticks whatever the range.
        assert!(html.matches("class=\"tick\"").count() <= 21);
    }
}

#[test]
fn out_of_range_json_timestamps_are_typed_diagnostics() {
    let lines = [
        r#"{"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"0000000000000001","name":"a","start_time_unix_nano":0,"end_time_unix_nano":1e30}"#,
        r#"{"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"0000000000000002","name":"b","start_time_unix_nano":"99999999999999999999","end_time_unix_nano":"1"}"#,
        r#"{"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"0000000000000003","name":"c","start_time_unix_nano":-5,"end_time_unix_nano":1}"#,
        r#"{"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"0000000000000004","name":"d","start_time_unix_nano":"18446744073709551615","end_time_unix_nano":18446744073709551615}"#,
    ];
    let loaded = load_reader(lines.join("\n").as_bytes(), Format::JsonLines).expect("readable");
    let kinds: Vec<DiagnosticKind> = loaded.diagnostics.iter().map(|d| d.kind).collect();
    assert_eq!(kinds, vec![DiagnosticKind::BadSpan; 3]);
    assert!(loaded.diagnostics[0].message.contains("out of range"));
    assert!(
        loaded.diagnostics[1]
            .message
            .contains("\"99999999999999999999\" is out of range")
    );
    assert!(loaded.diagnostics[2].message.contains("negative"));
    // u64::MAX itself fits and is kept.
    assert_eq!(loaded.spans.len(), 1);
    assert_eq!(loaded.spans[0].start_ns, u64::MAX);
    render_all(&analyze(&loaded.spans)[0]);
}

#[test]
fn diagnostics_of_a_trace_are_capped_and_counted() {
    let t = TraceId(9);
    let mut spans = vec![Span::new(t, SpanId(1), None, "root", 0, 1_000)];
    for i in 0..5_000u64 {
        spans.push(Span::new(
            t,
            SpanId(10 + i),
            Some(SpanId(1_000_000 + i)),
            "o",
            1,
            2,
        ));
    }
    let r = &analyze(&spans)[0];
    assert_eq!(r.diagnostics.len(), MAX_TRACE_DIAGNOSTICS);
    assert_eq!(
        r.suppressed_diagnostics,
        5_000 - MAX_TRACE_DIAGNOSTICS as u64
    );
    assert_eq!(r.detached.len(), 5_000);
    assert_eq!(stats([r]).diagnostics, 5_000);
    let text = render::text::trace(r);
    assert!(text.contains("… and 4980 more"), "{text}");
    assert!(text.contains("… 4980 more detached subtrees not shown"));
}

#[test]
fn many_spans_are_capped_in_text_and_html_with_a_line_saying_so() {
    // 5,000 children of distinct names, each a tiny step: 10,001 segments.
    let t = TraceId(11);
    let n = 5_000u64;
    let mut spans = vec![Span::new(t, SpanId(1), None, "root", 0, n * 1_000 + 1_000)];
    for i in 1..=n {
        spans.push(Span::new(
            t,
            SpanId(1 + i),
            Some(SpanId(1)),
            &format!("child-{i}"),
            i * 1_000,
            i * 1_000 + 900,
        ));
    }
    let r = &analyze(&spans)[0];
    assert_eq!(r.segments.len(), 2 * n as usize + 1);
    assert_eq!(r.contributions.len(), n as usize + 1);

    let text = render::text::trace(r);
    assert!(text.contains(&format!("… {} segments under 1% each", r.segments.len())));
    assert!(
        text.contains("… 4801 more contributors not shown"),
        "{text}"
    );
    assert!(text.lines().count() < 260);

    let html = render::html::page("t", Some(r), None);
    assert_eq!(html.matches("<rect class=\"span").count(), 2_000);
    // the critical path (every span here) is drawn first
    assert!(html.contains("… 3001 more spans not drawn"));
    // The root's 5,001 self slivers, a fraction of a pixel each, are merged
    // into the lines they form on screen; the page stays small.
    let cp_lines = html.matches("<line class=\"cp\"").count();
    assert!(cp_lines < 2_500, "{cp_lines} critical-path lines");
    assert!(html.contains(" segments) on the critical path"));
    assert!(html.len() < 4 << 20, "{} bytes", html.len());

    // --all-segments lists them all; JSON always does.
    let all = Limits {
        all_segments: true,
        ..Limits::default()
    };
    let full = render::text::trace_with(r, &all);
    assert!(full.contains("child-5000"));
    let v: serde_json::Value = serde_json::from_str(&render::json(r)).expect("valid JSON");
    assert_eq!(
        v["segments"].as_array().map(Vec::len),
        Some(r.segments.len())
    );
}
