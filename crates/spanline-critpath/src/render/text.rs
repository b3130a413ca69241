//! Plain-text tables for a terminal.

use std::fmt::Write;

use super::{Limits, PathLine, clean, shown_path};
use crate::analyze::{TraceReport, fmt_ns};
use crate::stats::{Percentiles, Stats};

pub(crate) fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

pub(crate) fn cut(s: &str, w: usize) -> String {
    let s = clean(s);
    if s.chars().count() <= w {
        s
    } else {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Writes "… and N more {what}" when `n` rows were left out.
fn left_out(o: &mut String, n: usize, what: &str) {
    if n > 0 {
        let _ = writeln!(o, "  … {n} more {what} not shown");
    }
}

/// The critical path of one trace, its contributors, the slack of the stages
/// off the path, detached subtrees and diagnostics, with the default
/// [`Limits`] (slivers merged, at most 200 rows per list).
pub fn trace(r: &TraceReport) -> String {
    trace_with(r, &Limits::default())
}

/// [`trace`] with explicit limits (`all_segments` lists every segment).
pub fn trace_with(r: &TraceReport, limits: &Limits) -> String {
    let max = limits.max_rows;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "trace {}  root {:?}  duration {}  ({})",
        r.trace_id,
        cut(&r.root_name, 200),
        fmt_ns(r.duration_ns),
        if r.structured {
            "structural attributes"
        } else {
            "timestamps only"
        }
    );
    let (lines, not_shown) = shown_path(r, limits);
    let (merged, runs) = lines.iter().fold((0, 0), |(n, k), l| match l {
        PathLine::Merged(m) => (n + m.count, k + 1),
        PathLine::Segment(_) => (n, k),
    });
    let _ = write!(o, "\ncritical path ({} segments", r.segments.len());
    if merged > 0 {
        let _ = write!(
            o,
            "; {merged} of them, each under {}% of the trace, shown as {runs} line{} — --all-segments or --json lists them",
            limits.sliver_share * 100.0,
            if runs == 1 { "" } else { "s" }
        );
    }
    let _ = writeln!(o, ")");
    let w = lines
        .iter()
        .filter_map(|l| match l {
            PathLine::Segment(s) => Some(s.span_name.chars().take(48).count()),
            PathLine::Merged(_) => None,
        })
        .max()
        .unwrap_or(4)
        .clamp(4, 48);
    let _ = writeln!(
        o,
        "  {:>11}  {:>11}  {:>6}  {:<5}  {:<16}  span",
        "at", "time", "share", "type", "stage"
    );
    for l in &lines {
        match l {
            PathLine::Segment(s) => {
                let _ = writeln!(
                    o,
                    "  {:>11}  {:>11}  {:>6}  {:<5}  {:<16}  {}",
                    format!("+{}", fmt_ns(s.start_ns.saturating_sub(r.start_ns))),
                    fmt_ns(s.duration_ns),
                    pct(s.share),
                    s.segment_type.as_str(),
                    cut(s.stage.as_deref().unwrap_or("-"), 16),
                    cut(&s.span_name, w)
                );
            }
            PathLine::Merged(m) => {
                let _ = writeln!(
                    o,
                    "  {:>11}  {:>11}  {:>6}  {:<5}  {:<16}  … {} segments under {}% each",
                    format!("+{}", fmt_ns(m.start_ns.saturating_sub(r.start_ns))),
                    fmt_ns(m.duration_ns),
                    pct(m.share),
                    m.segment_type.map_or("mixed", |t| t.as_str()),
                    cut(m.stage.as_deref().unwrap_or("-"), 16),
                    m.count,
                    limits.sliver_share * 100.0
                );
            }
        }
    }
    left_out(
        &mut o,
        not_shown,
        "segments (--all-segments or --json lists them)",
    );
    let _ = writeln!(o, "\ncontributors");
    for c in r.contributions.iter().take(max) {
        let _ = writeln!(
            o,
            "  {:<32}  {:<5}  {:>11}  {:>6}",
            cut(&c.key, 32),
            c.segment_type.as_str(),
            fmt_ns(c.duration_ns),
            pct(c.share)
        );
    }
    left_out(
        &mut o,
        r.contributions.len().saturating_sub(max),
        "contributors",
    );
    let off = r.off_path_stages();
    if !off.is_empty() {
        let _ = writeln!(
            o,
            "\nstages off the critical path (slack = how much longer they could have taken)"
        );
        for s in off.iter().take(max) {
            let _ = writeln!(
                o,
                "  {:<32}  {:<16}  took {:>11}  slack {}",
                cut(&s.name, 32),
                cut(s.stage.as_deref().unwrap_or("-"), 16),
                fmt_ns(s.end_ns.saturating_sub(s.start_ns)),
                s.slack_ns
                    .map_or_else(|| "unbounded (non-blocking)".to_owned(), fmt_ns)
            );
        }
        left_out(&mut o, off.len().saturating_sub(max), "stages off the path");
    }
    if !r.detached.is_empty() {
        let _ = writeln!(o, "\ndetached subtrees (not connected to the root)");
        for d in r.detached.iter().take(max.min(20)) {
            let mut path: Vec<String> = d
                .segments
                .iter()
                .take(8)
                .map(|s| format!("{} {}", cut(&s.span_name, 24), fmt_ns(s.duration_ns)))
                .collect();
            if d.segments.len() > 8 {
                path.push(format!("… {} more", d.segments.len() - 8));
            }
            let _ = writeln!(
                o,
                "  {:<32}  {:?}  {}  path: {}",
                cut(&d.name, 32),
                d.reason,
                fmt_ns(d.duration_ns),
                path.join(" → ")
            );
        }
        left_out(
            &mut o,
            r.detached.len().saturating_sub(max.min(20)),
            "detached subtrees",
        );
    }
    let total_diags = r.diagnostics.len() as u64 + r.suppressed_diagnostics;
    if total_diags > 0 {
        let _ = writeln!(o, "\ndiagnostics");
        for d in r.diagnostics.iter().take(20) {
            let _ = writeln!(o, "  {}", cut(&d.to_string(), 300));
        }
        if total_diags > 20 {
            let _ = writeln!(o, "  … and {} more", total_diags - 20);
        }
    }
    o
}

fn pcts(p: &Percentiles) -> String {
    format!(
        "{:>10} {:>10} {:>10} {:>10}",
        fmt_ns(p.p50),
        fmt_ns(p.p90),
        fmt_ns(p.p95),
        fmt_ns(p.p99)
    )
}

/// Aggregates across traces (at most 200 key rows; the JSON has them all).
pub fn stats(s: &Stats) -> String {
    let max = Limits::default().max_rows;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} traces, {} spans; trace duration p50 {}  p90 {}  p95 {}  p99 {}  max {}",
        s.traces,
        s.spans,
        fmt_ns(s.duration.p50),
        fmt_ns(s.duration.p90),
        fmt_ns(s.duration.p95),
        fmt_ns(s.duration.p99),
        fmt_ns(s.duration.max)
    );
    let _ = writeln!(
        o,
        "critical-path time: stages {}  hops {}  queues {}  self {}",
        pct(s.stage_share),
        pct(s.hop_share),
        pct(s.queue_share),
        pct(s.self_share)
    );
    let _ = writeln!(
        o,
        "\n{:<28} {:<5} {:>7} | {:^43} | {:^43} | {:>6} {:>9}",
        "key",
        "type",
        "spans",
        "duration p50 / p90 / p95 / p99",
        "on critical path p50 / p90 / p95 / p99",
        "share",
        "dominates"
    );
    for r in s.rows.iter().take(max) {
        let _ = writeln!(
            o,
            "{:<28} {:<5} {:>7} | {} | {} | {:>6} {:>9}",
            cut(&r.key, 28),
            r.segment_type.as_str(),
            r.spans,
            pcts(&r.duration),
            pcts(&r.critical),
            pct(r.critical_share),
            pct(r.dominance)
        );
    }
    if s.rows.len() > max {
        let _ = writeln!(
            o,
            "… {} more keys not shown (--json lists them)",
            s.rows.len() - max
        );
    }
    let t = &s.tail;
    let _ = writeln!(
        o,
        "\ntail: the slowest {} trace(s) (≥ {}) waited on",
        t.traces,
        fmt_ns(t.threshold_ns)
    );
    for r in t.rows.iter().take(10) {
        let _ = writeln!(
            o,
            "  {:<28} {:<5} {:>6} of their time, dominant in {}",
            cut(&r.key, 28),
            r.segment_type.as_str(),
            pct(r.share),
            r.dominates
        );
    }
    if !t.slowest.is_empty() {
        let _ = writeln!(
            o,
            "  slowest: {}",
            t.slowest
                .iter()
                .take(5)
                .map(|(id, d)| format!("{id} ({})", fmt_ns(*d)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if s.diagnostics > 0 {
        let _ = writeln!(
            o,
            "\n{} diagnostics while analysing (see `spanline critpath` for details)",
            s.diagnostics
        );
    }
    o
}
