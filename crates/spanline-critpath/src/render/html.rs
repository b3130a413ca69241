//! A self-contained HTML page: an SVG waterfall of one trace (critical path
//! highlighted, queue waits shaded, details on hover) and a summary chart
//! across traces. No scripts, no external resources.

use std::collections::HashMap;
use std::fmt::Write;

use super::{Limits, PathLine, is_unsafe_char, shown_path};
use crate::analyze::{SegmentType, TraceReport, fmt_ns};
use crate::stats::Stats;

/// Escapes text for HTML/SVG content and attribute values; control, bidi
/// and invisible characters ([`is_unsafe_char`])
/// become `?`, except the newlines of tooltips.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if is_unsafe_char(c) && c != '\n' => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

/// At most 200 characters of a name for tooltips and tables.
fn short(s: &str) -> String {
    super::truncate(s, 200)
}

const WIDTH: f64 = 1200.0;
const LABEL_W: f64 = 380.0;
const ROW_H: f64 = 20.0;
const TOP: f64 = 30.0;

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
svg { background: #fff; border: 1px solid #ddd; }
svg text { font-size: 11px; fill: #333; font-family: ui-monospace, monospace; }
rect.span { fill: #c9d3e0; stroke: #8a9ab0; stroke-width: 0.5; }
rect.span.stage { fill: #b9cde8; }
rect.span.hop { fill: #d9c7ea; }
rect.span.queue { fill: url(#queue-hatch); stroke: #c28a00; }
rect.span.critical { stroke: #c0392b; stroke-width: 1.5; }
rect.span.critical.stage { fill: #f1948a; }
rect.span.critical.hop { fill: #d7a3e6; }
rect.span.critical.self { fill: #f5b7b1; }
rect.span.error { stroke: #000; stroke-dasharray: 3 2; }
rect.span.detached { opacity: 0.6; }
line.cp { stroke: #c0392b; stroke-width: 3; }
line.tick { stroke: #eee; }
rect.bar.p50 { fill: #e74c3c; } rect.bar.p99 { fill: #f5b7b1; }
table { border-collapse: collapse; font-size: 12px; } td, th { padding: 2px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.legend span { display: inline-block; margin-right: 16px; font-size: 12px; }
"#;

fn nice_step(total: u64, target: u64) -> u64 {
    let raw = (total / target.max(1)).max(1);
    let mut p = 1u64;
    while p.saturating_mul(10) <= raw {
        p *= 10;
    }
    for m in [1, 2, 5, 10] {
        if p.saturating_mul(m) >= raw {
            return p.saturating_mul(m);
        }
    }
    p.saturating_mul(10)
}

/// The SVG waterfall of one trace with the default [`Limits`]: one
/// `<rect class="span …">` per drawn span (class `critical` on the primary
/// critical path, `queue`/`hop`/`stage`/`self` by type), a red line under
/// each critical-path segment of a drawn span, and a `<title>` tooltip on
/// every bar. All spans are drawn up to 2,000; beyond that the spans on the
/// critical path come first and a last line says how many were left out.
pub fn waterfall_svg(r: &TraceReport) -> String {
    waterfall_svg_with(r, &Limits::default())
}

/// The spans to draw (indices into `r.spans`, in order): all of them, or
/// the primary tree's critical path first, then the others, up to `max`.
fn drawn_spans(r: &TraceReport, max: usize) -> Vec<usize> {
    if r.spans.len() <= max {
        return (0..r.spans.len()).collect();
    }
    let on = |i: &usize| r.spans[*i].on_path && r.spans[*i].tree == 0;
    let mut v: Vec<usize> = (0..r.spans.len()).filter(on).take(max).collect();
    let rest = max - v.len();
    v.extend((0..r.spans.len()).filter(|i| !on(i)).take(rest));
    v.sort_unstable();
    v
}

/// [`waterfall_svg`] with explicit limits.
pub fn waterfall_svg_with(r: &TraceReport, limits: &Limits) -> String {
    let t0 = r
        .spans
        .iter()
        .map(|s| s.start_ns)
        .min()
        .unwrap_or(r.start_ns);
    let t1 = r
        .spans
        .iter()
        .map(|s| s.end_ns)
        .max()
        .unwrap_or(r.end_ns)
        .max(t0);
    // Every coordinate is finite: the time range is at least 1 ns, and
    // times are taken relative to t0 with saturating arithmetic.
    let dur = t1 - t0;
    let span = (dur as f64).max(1.0);
    let chart_w = WIDTH - LABEL_W - 20.0;
    let x = |t: u64| LABEL_W + (t.saturating_sub(t0)) as f64 / span * chart_w;
    let drawn = drawn_spans(r, limits.max_waterfall_spans);
    let left_out = r.spans.len() - drawn.len();
    let rows = drawn.len() + usize::from(left_out > 0);
    let height = TOP + ROW_H * rows as f64 + 10.0;
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="waterfall" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">"#
    );
    o.push_str(r##"<defs><pattern id="queue-hatch" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)"><path d="M0,0 L0,6" stroke="#e0a800" stroke-width="3"/></pattern></defs>"##);
    // axis: at most ~10 ticks whatever the range (no loop on the raw range)
    let step = nice_step(dur, 8).max(1);
    for i in 0..=(dur / step).min(20) {
        let t = i * step;
        let xx = LABEL_W + t as f64 / span * chart_w;
        let _ = write!(
            o,
            r#"<line class="tick" x1="{xx:.1}" y1="{}" x2="{xx:.1}" y2="{height}"/><text x="{xx:.1}" y="{}" text-anchor="middle">{}</text>"#,
            TOP - 8.0,
            TOP - 12.0,
            escape(&fmt_ns(t))
        );
    }
    let mut row_of: HashMap<(u32, crate::model::SpanId), usize> =
        HashMap::with_capacity(r.spans.len());
    for (i, s) in drawn.iter().map(|&k| &r.spans[k]).enumerate() {
        row_of.insert((s.tree, s.span_id), i);
        let y = TOP + ROW_H * i as f64;
        let indent = 6.0 + f64::from(s.depth.min(20)) * 10.0;
        let label: String = s.name.chars().take(48).collect();
        let _ = write!(
            o,
            r#"<text x="{indent:.1}" y="{:.1}">{}</text>"#,
            y + 13.0,
            escape(&label)
        );
        let mut class = String::from("span ");
        class.push_str(match s.segment_type {
            SegmentType::Stage => "stage",
            SegmentType::Hop => "hop",
            SegmentType::Queue => "queue",
            SegmentType::SelfTime => "self",
        });
        if s.on_path && s.tree == 0 {
            class.push_str(" critical");
        }
        if s.error {
            class.push_str(" error");
        }
        if s.tree > 0 {
            class.push_str(" detached");
        }
        let (x0, x1) = (x(s.start_ns), x(s.end_ns));
        let tip = format!(
            "{}\nstage: {}\ntype: {}\nduration: {}\nstarts at: +{}\non critical path: {}\nown time on path: {}\nslack: {}\nservice: {}\nspan id: {}{}",
            short(&s.name),
            short(s.stage.as_deref().unwrap_or("-")),
            s.segment_type.as_str(),
            fmt_ns(s.end_ns.saturating_sub(s.start_ns)),
            fmt_ns(s.start_ns.saturating_sub(r.start_ns)),
            if s.on_path { "yes" } else { "no" },
            fmt_ns(s.critical_ns),
            s.slack_ns.map_or_else(|| "non-blocking".to_owned(), fmt_ns),
            short(s.service_name.as_deref().unwrap_or("-")),
            s.span_id,
            if s.error { "\nstatus: error" } else { "" }
        );
        let _ = write!(
            o,
            r#"<rect class="{class}" data-span-id="{}" x="{x0:.2}" y="{:.1}" width="{:.2}" height="{:.1}"><title>{}</title></rect>"#,
            s.span_id,
            y + 3.0,
            (x1 - x0).max(1.0),
            ROW_H - 8.0,
            escape(&tip)
        );
    }
    // Critical-path lines: pieces of one row less than a pixel apart are
    // drawn as one line (a root with a million slivers is a few hundred
    // lines, not a million), and at most `4 × max_waterfall_spans` lines.
    struct CpLine<'s> {
        row: usize,
        x0: f64,
        x1: f64,
        count: usize,
        ns: u64,
        share: f64,
        name: &'s str,
    }
    let mut lines: Vec<CpLine<'_>> = Vec::new();
    let mut last_on_row: HashMap<usize, usize> = HashMap::new();
    let max_lines = limits.max_waterfall_spans.saturating_mul(4);
    let mut lines_left_out = 0usize;
    for seg in &r.segments {
        let Some(&row) = row_of.get(&(0, seg.span_id)) else {
            continue;
        };
        let (x0, x1) = (x(seg.start_ns), x(seg.end_ns));
        if let Some(&li) = last_on_row.get(&row)
            && x0 - lines[li].x1 < 1.0
        {
            let l = &mut lines[li];
            l.x1 = l.x1.max(x1);
            l.count += 1;
            l.ns = l.ns.saturating_add(seg.duration_ns);
            l.share += seg.share;
            continue;
        }
        if lines.len() >= max_lines {
            lines_left_out += 1;
            continue;
        }
        last_on_row.insert(row, lines.len());
        lines.push(CpLine {
            row,
            x0,
            x1,
            count: 1,
            ns: seg.duration_ns,
            share: seg.share,
            name: &seg.span_name,
        });
    }
    for l in &lines {
        let y = TOP + ROW_H * l.row as f64 + ROW_H - 3.0;
        let what = if l.count > 1 {
            format!(" ({} segments)", l.count)
        } else {
            String::new()
        };
        let _ = write!(
            o,
            r#"<line class="cp" x1="{:.2}" y1="{y:.1}" x2="{:.2}" y2="{y:.1}"><title>{}{what} on the critical path: {} ({:.1}%)</title></line>"#,
            l.x0,
            l.x1.max(l.x0 + 1.0),
            escape(&short(l.name)),
            fmt_ns(l.ns),
            l.share * 100.0
        );
    }
    if lines_left_out > 0 {
        let _ = write!(
            o,
            r#"<text class="left-out" x="{LABEL_W}" y="{:.1}">… {lines_left_out} more critical-path pieces not drawn</text>"#,
            TOP - 20.0
        );
    }
    if left_out > 0 {
        let _ = write!(
            o,
            r#"<text class="left-out" x="6" y="{:.1}">… {left_out} more spans not drawn ({} drawn, the critical path first); `spanline critpath --json` lists them all</text>"#,
            TOP + ROW_H * drawn.len() as f64 + 13.0,
            drawn.len()
        );
    }
    o.push_str("</svg>");
    o
}

/// A bar chart across traces: per key, p50 and p99 of critical-path
/// contribution (one `<rect class="bar p50">` and one `<rect class="bar p99">`
/// per key, top 20 keys), with share and dominance in the tooltip.
pub fn summary_svg(s: &Stats) -> String {
    let rows: Vec<_> = s.rows.iter().take(20).collect();
    let max = rows
        .iter()
        .map(|r| r.critical.p99)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let chart_w = WIDTH - LABEL_W - 120.0;
    let height = TOP + 26.0 * rows.len() as f64 + 10.0;
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="summary" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">"#
    );
    let _ = write!(
        o,
        r#"<text x="{LABEL_W}" y="18">critical-path time per trace: p50 (dark) and p99 (light); scale 0 – {}</text>"#,
        escape(&fmt_ns(max as u64))
    );
    for (i, r) in rows.iter().enumerate() {
        let y = TOP + 26.0 * i as f64;
        let label: String = format!("{} [{}]", r.key, r.segment_type.as_str())
            .chars()
            .take(52)
            .collect();
        let _ = write!(
            o,
            r#"<text x="6" y="{:.1}">{}</text>"#,
            y + 14.0,
            escape(&label)
        );
        let tip = format!(
            "{} ({})\ncritical p50 {} · p90 {} · p95 {} · p99 {}\nduration p50 {} · p99 {}\nshare of all critical time {:.1}%\ndominant in {:.1}% of traces",
            short(&r.key),
            r.segment_type.as_str(),
            fmt_ns(r.critical.p50),
            fmt_ns(r.critical.p90),
            fmt_ns(r.critical.p95),
            fmt_ns(r.critical.p99),
            fmt_ns(r.duration.p50),
            fmt_ns(r.duration.p99),
            r.critical_share * 100.0,
            r.dominance * 100.0
        );
        let w99 = r.critical.p99 as f64 / max * chart_w;
        let w50 = r.critical.p50 as f64 / max * chart_w;
        let _ = write!(
            o,
            r#"<rect class="bar p99" x="{LABEL_W}" y="{:.1}" width="{:.2}" height="16"><title>{}</title></rect>"#,
            y + 2.0,
            w99.max(0.5),
            escape(&tip)
        );
        let _ = write!(
            o,
            r#"<rect class="bar p50" x="{LABEL_W}" y="{:.1}" width="{:.2}" height="16"><title>{}</title></rect>"#,
            y + 2.0,
            w50.max(0.5),
            escape(&tip)
        );
        let _ = write!(
            o,
            r#"<text x="{:.1}" y="{:.1}">{:.1}% · dom {:.0}%</text>"#,
            LABEL_W + w99.max(w50) + 6.0,
            y + 14.0,
            r.critical_share * 100.0,
            r.dominance * 100.0
        );
    }
    o.push_str("</svg>");
    o
}

/// The whole page: the waterfall of `trace` (if any) and the summary of
/// `stats` (if any), with the default [`Limits`].
pub fn page(title: &str, trace: Option<&TraceReport>, stats: Option<&Stats>) -> String {
    page_with(title, trace, stats, &Limits::default())
}

/// [`page`] with explicit limits.
pub fn page_with(
    title: &str,
    trace: Option<&TraceReport>,
    stats: Option<&Stats>,
    limits: &Limits,
) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        escape(&short(title)),
        escape(&short(title))
    );
    if let Some(r) = trace {
        let _ = write!(
            o,
            "<h2>Trace {} — {} — {}</h2>\n<p class=\"legend\"><span style=\"color:#c0392b\">■ on the critical path</span><span style=\"color:#c28a00\">▨ queue wait</span><span style=\"color:#8e44ad\">■ remote hop</span><span>hover a bar for details</span></p>\n",
            r.trace_id,
            escape(&short(&r.root_name)),
            escape(&fmt_ns(r.duration_ns))
        );
        o.push_str(&waterfall_svg_with(r, limits));
        o.push_str("\n<h2>Critical path</h2>\n<table><tr><th>span</th><th>stage</th><th>type</th><th>time</th><th>share</th></tr>\n");
        let (lines, not_shown) = shown_path(r, limits);
        for l in &lines {
            let (name, stage, ty, ns, share) = match l {
                PathLine::Segment(s) => (
                    escape(&short(&s.span_name)),
                    s.stage.as_deref(),
                    s.segment_type.as_str(),
                    s.duration_ns,
                    s.share,
                ),
                PathLine::Merged(m) => (
                    format!(
                        "… {} segments under {}% each",
                        m.count,
                        limits.sliver_share * 100.0
                    ),
                    m.stage.as_deref(),
                    m.segment_type.map_or("mixed", |t| t.as_str()),
                    m.duration_ns,
                    m.share,
                ),
            };
            let _ = writeln!(
                o,
                "<tr><td>{name}</td><td>{}</td><td>{ty}</td><td>{}</td><td>{:.1}%</td></tr>",
                escape(&short(stage.unwrap_or("-"))),
                escape(&fmt_ns(ns)),
                share * 100.0
            );
        }
        o.push_str("</table>\n");
        if not_shown > 0 {
            let _ = writeln!(
                o,
                "<p class=\"left-out\">… {not_shown} more segments not shown; `spanline critpath --json` lists them all</p>"
            );
        }
    }
    if let Some(s) = stats {
        let _ = write!(
            o,
            "<h2>Across {} traces</h2>\n<p>trace duration p50 {} · p99 {}; critical-path time in stages {:.1}%, hops {:.1}%, queues {:.1}%, other {:.1}%</p>\n",
            s.traces,
            escape(&fmt_ns(s.duration.p50)),
            escape(&fmt_ns(s.duration.p99)),
            s.stage_share * 100.0,
            s.hop_share * 100.0,
            s.queue_share * 100.0,
            s.self_share * 100.0
        );
        o.push_str(&summary_svg(s));
        let _ = write!(
            o,
            "\n<h2>Tail: the slowest {} trace(s), ≥ {}</h2>\n<table><tr><th>key</th><th>type</th><th>share of their time</th><th>dominant in</th></tr>\n",
            s.tail.traces,
            escape(&fmt_ns(s.tail.threshold_ns))
        );
        for r in s.tail.rows.iter().take(15) {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td></tr>",
                escape(&short(&r.key)),
                r.segment_type.as_str(),
                r.share * 100.0,
                r.dominates
            );
        }
        o.push_str("</table>\n");
    }
    o.push_str("</body></html>\n");
    o
}
