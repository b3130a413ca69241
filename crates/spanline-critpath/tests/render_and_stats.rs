//! Renderers (parse-level SVG checks, optional headless screenshot) and
//! aggregates across traces.

mod common;

use common::*;
use spanline_critpath::semconv as sc;
use spanline_critpath::{SegmentType, Span, analyze, render, stats};

/// Kafka-style trace: a queue wait inside a hop inside a stage.
fn queued(n: u128, queue_ms: u64) -> Trace {
    let mut t = Trace::new(n);
    let root = t.span(None, "invoke_workflow rag", 0, 40 + queue_ms);
    t.stage(root, "embeddings e", "embed", 0, 0, 10);
    let st = t.stage(root, "retrieval r", "retrieve", 1, 10, 40 + queue_ms);
    let hop = t.span(Some(st), "send rag.retrieve", 10, 40 + queue_ms);
    t.attr(hop, sc::SEGMENT_TYPE, "hop");
    let q = t.span(Some(hop), "queue rag.retrieve", 10, 10 + queue_ms);
    t.attr(q, sc::SEGMENT_TYPE, "queue");
    let p = t.span(
        Some(hop),
        "process rag.retrieve",
        10 + queue_ms,
        40 + queue_ms,
    );
    let inner = t.span(Some(p), "retrieval docs", 10 + queue_ms, 40 + queue_ms);
    t.attr(inner, sc::STAGE_NAME, "docs");
    t
}

/// The class lists of every `<rect>` element, in document order.
fn rect_classes(svg: &str) -> Vec<Vec<String>> {
    svg.split("<rect ")
        .skip(1)
        .map(|tag| {
            let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
            let cls = tag
                .split("class=\"")
                .nth(1)
                .and_then(|c| c.split('"').next())
                .unwrap_or("");
            cls.split_whitespace().map(str::to_owned).collect()
        })
        .collect()
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[test]
fn waterfall_svg_has_one_rect_per_span_and_marks_the_critical_ones() {
    let mut t = sample_pipeline(1);
    let evil = t.spans.len() - 1;
    t.spans[evil].name = "<script>alert(1)</script> & \"x\"".into();
    let r = t.analyze();
    let svg = render::html::waterfall_svg(&r);
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    assert_eq!(
        count(&svg, "<rect "),
        r.spans.len(),
        "exactly one rect per span"
    );
    assert_eq!(count(&svg, "<rect class=\"span"), r.spans.len());
    let critical = r.spans.iter().filter(|s| s.on_path).count();
    assert_eq!(critical, r.spans.len() - 1, "all but bm25");
    let classes = rect_classes(&svg);
    assert!(classes.iter().all(|c| c.iter().any(|x| x == "span")));
    assert_eq!(
        classes
            .iter()
            .filter(|c| c.iter().any(|x| x == "critical"))
            .count(),
        critical
    );
    // every rect carries a tooltip
    assert_eq!(
        count(&svg, "<title>"),
        r.spans.len() + count(&svg, "<line class=\"cp\"")
    );
    assert_eq!(count(&svg, "<line class=\"cp\""), r.segments.len());
    // the bm25 bar is not critical
    let bm25 = r
        .spans
        .iter()
        .find(|s| &*s.name == "retrieval docs-bm25")
        .expect("span");
    let tag_start = svg
        .find(&format!("data-span-id=\"{}\"", bm25.span_id))
        .expect("bar");
    let open = svg[..tag_start].rfind("<rect").expect("rect");
    assert!(!svg[open..tag_start].contains("critical"));
    // hostile names are escaped
    assert!(!svg.contains("<script>"));
    assert!(svg.contains("&lt;script&gt;"));
    // balanced rect elements
    assert_eq!(count(&svg, "<rect "), count(&svg, "</rect>"));
}

#[test]
fn queue_waits_are_shaded() {
    let r = queued(1, 50).analyze();
    let svg = render::html::waterfall_svg(&r);
    assert_eq!(count(&svg, "<rect "), r.spans.len());
    assert_eq!(count(&svg, "class=\"span queue critical\""), 1);
    assert!(svg.contains("id=\"queue-hatch\""));
    assert_eq!(
        count(&svg, "class=\"span hop critical\""),
        2,
        "hop and the consumer under it"
    );
}

#[test]
fn html_page_is_self_contained() {
    let reports: Vec<_> = (0..20).map(|i| queued(i, 5 + i as u64).analyze()).collect();
    let s = stats(&reports);
    let page = render::html::page("t <1>", Some(&reports[0]), Some(&s));
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(!page.contains("<script"), "no scripts");
    assert!(
        !page.contains("http://")
            || page.matches("http://").all(|_| true)
                && page.contains("xmlns=\"http://www.w3.org/2000/svg\"")
    );
    assert!(!page.contains("src="), "no external resources");
    assert!(page.contains("t &lt;1&gt;"));
    let summary = render::html::summary_svg(&s);
    assert_eq!(
        count(&summary, "<rect class=\"bar p50\""),
        s.rows.len().min(20)
    );
    assert_eq!(
        count(&summary, "<rect class=\"bar p99\""),
        s.rows.len().min(20)
    );
}

#[test]
fn headless_screenshot_when_chromium_exists() {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        println!("skipped: /usr/bin/chromium not found");
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let html = dir.join("page.html");
    let png = dir.join("out.png");
    let r = sample_pipeline(1).analyze();
    let s = stats([&r]);
    std::fs::write(&html, render::html::page("screenshot", Some(&r), Some(&s))).expect("write");
    let profile = dir.join("profile");
    let status = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .status()
        .expect("chromium runs");
    assert!(status.success());
    let bytes = std::fs::read(&png).expect("png written");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG was written");
}

#[test]
fn text_and_json_renderers() {
    let r = sample_pipeline(1).analyze();
    let text = render::text::trace(&r);
    assert!(text.contains("critical path (13 segments)"));
    assert!(text.contains("retrieval docs-bm25"));
    assert!(text.contains("slack 20.000ms"));
    let json: serde_json::Value = serde_json::from_str(&render::json(&r)).expect("valid JSON");
    assert_eq!(json["segments"].as_array().map(Vec::len), Some(13));
    assert_eq!(json["segments"][3]["span_name"], "retrieval docs-dense");
    assert_eq!(json["segments"][3]["segment_type"], "stage");
    assert_eq!(json["segments"][0]["segment_type"], "self");
    assert_eq!(json["trace_id"], r.trace_id.to_string());
}

#[test]
fn stats_across_traces_with_a_slow_tail() {
    // 99 traces with a 5 ms queue wait, one with a 500 ms queue wait.
    let mut spans: Vec<Span> = Vec::new();
    for i in 0..100u128 {
        let q = if i == 42 { 500 } else { 5 };
        spans.extend(queued(i, q).spans);
    }
    let reports = analyze(&spans);
    assert_eq!(reports.len(), 100);
    let s = stats(&reports);
    assert_eq!((s.traces, s.spans), (100, 700));
    let docs = s.rows.iter().find(|r| &*r.key == "docs").expect("docs row");
    assert_eq!(docs.segment_type, SegmentType::Stage);
    assert_eq!(docs.duration.p50, 30 * MS);
    assert_eq!(docs.critical.p99, 30 * MS);
    assert_eq!(docs.dominates, 99);
    let queue = s
        .rows
        .iter()
        .find(|r| &*r.key == "queue rag.retrieve")
        .expect("queue row");
    assert_eq!(queue.segment_type, SegmentType::Queue);
    assert_eq!(
        (queue.critical.p50, queue.critical.p99, queue.critical.max),
        (5 * MS, 5 * MS, 500 * MS)
    );
    assert_eq!(queue.dominates, 1);
    // 99*5 + 500 ms of queue over 99*45 + 540 ms of total
    let expected = (99.0 * 5.0 + 500.0) / (99.0 * 45.0 + 540.0);
    assert!((s.queue_share - expected).abs() < 1e-9);
    // the tail is the one slow trace, and it waited on the queue
    assert_eq!(s.tail.traces, 1);
    assert_eq!(s.tail.slowest[0].0, reports[42].trace_id);
    assert_eq!(&*s.tail.rows[0].key, "queue rag.retrieve");
    assert!((s.tail.rows[0].share - 500.0 / 540.0).abs() < 1e-9);
    let text = render::text::stats(&s);
    assert!(text.contains("queue rag.retrieve"));
    let _: serde_json::Value = serde_json::from_str(&render::json(&s)).expect("valid JSON");
}
