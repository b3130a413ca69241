//! Terminal tables for `diff`, `whatif` and `--group-by`.

use std::fmt::Write;

use super::text::{cut, pct};
use crate::analyze::fmt_ns;
use crate::diff::{Diff, Interval, Presence};
use crate::group::{GroupedDiff, GroupedStats};
use crate::whatif::WhatIf;

/// Rows shown in a table before a line says how many were left out.
pub const MAX_ROWS: usize = 30;

/// Signed nanoseconds: `+1.200s`, `-3.0µs`, `0ns`.
pub fn fmt_delta(ns: i64) -> String {
    let sign = match ns.signum() {
        1 => "+",
        -1 => "-",
        _ => "",
    };
    format!("{sign}{}", fmt_ns(ns.unsigned_abs()))
}

fn fmt_ci(ci: Option<Interval>) -> String {
    ci.map_or_else(
        || "(not resampled)".to_owned(),
        |c| format!("[{}, {}]", fmt_delta(c.lo_ns), fmt_delta(c.hi_ns)),
    )
}

fn left_out(o: &mut String, n: usize, what: &str) {
    if n > MAX_ROWS {
        let _ = writeln!(
            o,
            "  … and {} more {what} (use --json for all)",
            n - MAX_ROWS
        );
    }
}

/// What changed between baseline and current, and which keys explain it.
pub fn diff(d: &Diff) -> String {
    let mut o = String::new();
    let side = |name: &str, s: &crate::diff::SideSummary| {
        format!(
            "{name}: {} traces, p50 {}  p95 {}  p99 {}",
            s.traces,
            fmt_ns(s.duration.p50),
            fmt_ns(s.duration.p95),
            fmt_ns(s.duration.p99)
        )
    };
    let _ = writeln!(o, "{}", side("baseline", &d.baseline));
    let _ = writeln!(o, "{}", side("current ", &d.current));
    let conf = format!("{:.0}%", d.options.confidence * 100.0);
    let _ = writeln!(
        o,
        "\ntrace latency ({conf} bootstrap intervals, {} resamples, seed {})",
        d.resamples_used, d.options.seed
    );
    for q in &d.quantiles {
        let _ = writeln!(
            o,
            "  {}  {} → {}  {} {}",
            q.quantile,
            fmt_ns(q.baseline_ns),
            fmt_ns(q.current_ns),
            fmt_delta(q.delta_ns),
            fmt_ci(Some(q.ci)),
        );
    }
    let head: Vec<String> = d
        .quantiles
        .iter()
        .map(|q| format!("{:^40}", format!("Δ at {} [{conf} CI]", q.quantile)))
        .collect();
    let line = format!("  {:<28} {:<5} {}", "key", "type", head.join("  "));
    let _ = writeln!(
        o,
        "\nchange in critical-path contribution, largest first\n{}",
        line.trim_end()
    );
    for r in d.rows.iter().take(MAX_ROWS) {
        let cells: Vec<String> = r
            .changes
            .iter()
            .map(|c| {
                format!(
                    "{:>11} {:<27}{}",
                    fmt_delta(c.delta_ns),
                    fmt_ci(c.ci),
                    if c.cause { "*" } else { " " }
                )
            })
            .collect();
        let tag = match r.presence {
            Presence::Both => "",
            Presence::BaselineOnly => "  (gone)",
            Presence::CurrentOnly => "  (new)",
        };
        let line = format!(
            "  {:<28} {:<5} {}{tag}",
            cut(&r.key, 28),
            r.segment_type.as_str(),
            cells.join("  ")
        );
        let _ = writeln!(o, "{}", line.trim_end());
    }
    left_out(&mut o, d.rows.len(), "keys");
    let _ = writeln!(o);
    for q in &d.quantiles {
        if q.causes.is_empty() {
            let _ = writeln!(
                o,
                "{}: no cause: no key's interval lies beyond ±{} of the baseline latency",
                q.quantile,
                pct(d.options.min_effect)
            );
        } else {
            let names: Vec<String> = q
                .causes
                .iter()
                .take(5)
                .map(|k| {
                    let c = d
                        .rows
                        .iter()
                        .find(|r| r.key == *k)
                        .and_then(|r| r.changes.iter().find(|c| c.quantile == q.quantile));
                    format!(
                        "{} ({})",
                        cut(k, 40),
                        c.map_or_else(String::new, |c| fmt_delta(c.delta_ns))
                    )
                })
                .collect();
            let _ = writeln!(
                o,
                "{}: {} explained by {}",
                q.quantile,
                fmt_delta(q.delta_ns),
                names.join(", ")
            );
        }
    }
    for n in &d.notes {
        let _ = writeln!(o, "note: {}", cut(n, 200));
    }
    o
}

/// One diff per group.
pub fn grouped_diff(g: &GroupedDiff) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "grouped by {}: {} group(s)",
        cut(&g.attribute, 60),
        g.groups.len()
    );
    for gd in g.groups.iter().take(MAX_ROWS) {
        let _ = writeln!(
            o,
            "\n=== {} = {}  (baseline {} traces, current {})",
            cut(&g.attribute, 60),
            cut(&gd.group.label(&g.attribute), 60),
            gd.baseline_traces,
            gd.current_traces
        );
        match (&gd.diff, &gd.problem) {
            (Some(d), _) => o.push_str(&diff(d)),
            (None, Some(p)) => {
                let _ = writeln!(o, "no diff: {p}");
            }
            (None, None) => {}
        }
    }
    left_out(&mut o, g.groups.len(), "groups");
    o
}

/// Latency, error rate and critical-path shares per group.
pub fn grouped_stats(g: &GroupedStats) -> String {
    let mut o = String::new();
    let attr = cut(&g.attribute, 60);
    let _ = writeln!(o, "grouped by {attr}: {} group(s)", g.groups.len());
    let _ = writeln!(
        o,
        "\n  {:<28} {:>7} {:>7} {:>10} {:>10} {:>10}  top critical-path shares",
        attr, "traces", "errors", "p50", "p95", "p99"
    );
    for gs in g.groups.iter().take(MAX_ROWS) {
        let top: Vec<String> = gs
            .stats
            .rows
            .iter()
            .take(3)
            .map(|r| format!("{} {}", cut(&r.key, 24), pct(r.critical_share)))
            .collect();
        let _ = writeln!(
            o,
            "  {:<28} {:>7} {:>7} {:>10} {:>10} {:>10}  {}{}",
            cut(&gs.group.label(&g.attribute), 28),
            gs.traces,
            pct(gs.error_rate),
            fmt_ns(gs.stats.duration.p50),
            fmt_ns(gs.stats.duration.p95),
            fmt_ns(gs.stats.duration.p99),
            top.join(", "),
            if gs.mixed_traces > 0 {
                format!("  ({} mixed)", gs.mixed_traces)
            } else {
                String::new()
            }
        );
    }
    left_out(&mut o, g.groups.len(), "groups");

    // Share per key and group (the keys of the busiest groups).
    let cols: Vec<_> = g.groups.iter().take(6).collect();
    let mut keys: Vec<&std::sync::Arc<str>> = Vec::new();
    for gs in &cols {
        for r in gs.stats.rows.iter().take(MAX_ROWS) {
            if !keys.contains(&&r.key) && keys.len() < MAX_ROWS {
                keys.push(&r.key);
            }
        }
    }
    let _ = writeln!(o, "\ncritical-path share by {attr}");
    let mut line = format!("  {:<28}", "key");
    for gs in &cols {
        let _ = write!(line, " {:>14}", cut(&gs.group.label(&g.attribute), 14));
    }
    let _ = writeln!(o, "{line}");
    let by_key: Vec<std::collections::HashMap<&str, f64>> = cols
        .iter()
        .map(|gs| {
            let mut m = std::collections::HashMap::new();
            for r in &gs.stats.rows {
                *m.entry(&*r.key).or_insert(0.0) += r.critical_share;
            }
            m
        })
        .collect();
    for k in keys {
        let mut line = format!("  {:<28}", cut(k, 28));
        for m in &by_key {
            let share = m.get(&**k).copied().unwrap_or(0.0);
            let _ = write!(line, " {:>14}", pct(share));
        }
        let _ = writeln!(o, "{line}");
    }
    if g.groups.len() > cols.len() {
        let _ = writeln!(
            o,
            "  … {} more groups not shown as columns (use --json)",
            g.groups.len() - cols.len()
        );
    }
    o
}

/// Projected latency and shares.
pub fn whatif(w: &WhatIf) -> String {
    let mut o = String::new();
    let scales: Vec<String> = w
        .keys
        .iter()
        .map(|k| format!("{} ×{}", cut(&k.scale.key, 40), k.scale.factor))
        .collect();
    let _ = writeln!(o, "what if: {}", scales.join(", "));
    let _ = writeln!(
        o,
        "{} traces; {} changed: {} exact (structural), {} approximate (timestamps)",
        w.traces, w.changed_traces, w.exact_traces, w.approximate_traces
    );
    let _ = writeln!(
        o,
        "\n  {:<8} {:>11} {:>11} {:>11}",
        "latency", "recorded", "projected", "change"
    );
    for (name, b, a) in [
        ("p50", w.before.p50, w.after.p50),
        ("p95", w.before.p95, w.after.p95),
        ("p99", w.before.p99, w.after.p99),
        ("mean", w.before.mean, w.after.mean),
    ] {
        let d = i128::from(a) - i128::from(b);
        let _ = writeln!(
            o,
            "  {:<8} {:>11} {:>11} {:>11}",
            name,
            fmt_ns(b),
            fmt_ns(a),
            fmt_delta(i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX }))
        );
    }
    let _ = writeln!(
        o,
        "\ncritical-path share\n  {:<28} {:<5} {:>9} {:>9}",
        "key", "type", "recorded", "projected"
    );
    for s in w.shares.iter().take(MAX_ROWS) {
        let _ = writeln!(
            o,
            "  {:<28} {:<5} {:>9} {:>9}{}",
            cut(&s.key, 28),
            s.segment_type.as_str(),
            pct(s.before),
            pct(s.after),
            if s.scaled { "  (scaled)" } else { "" }
        );
    }
    left_out(&mut o, w.shares.len(), "keys");
    let _ = writeln!(o, "\nper scaled key");
    for k in &w.keys {
        let _ = writeln!(
            o,
            "  {:<28} in {} traces: {} exact, {} approximate",
            cut(&k.scale.key, 28),
            k.traces,
            k.exact_traces,
            k.approximate_traces
        );
    }
    if w.approximate_traces > 0 {
        let at: Vec<String> = w
            .approximate_at
            .iter()
            .map(|(n, c)| format!("{} ({c})", cut(n, 40)))
            .collect();
        let _ = writeln!(
            o,
            "approximate: children placed from timestamps under {}",
            at.join(", ")
        );
        let ex: Vec<String> = w
            .approximate_examples
            .iter()
            .take(5)
            .map(|t| t.to_string())
            .collect();
        let _ = writeln!(o, "  e.g. traces {}", ex.join(", "));
    }
    o
}
