//! The timestamp method for spans without structural attributes, and its
//! robustness: clock skew, orphans, parent cycles, end-before-start.

mod common;

use common::*;
use spanline_critpath::{DetachReason, DiagnosticKind, SpanKind};

#[test]
fn walks_back_from_the_last_finishing_child() {
    let mut t = Trace::default();
    let root = t.span(None, "GET /answer", 0, 100);
    t.span(Some(root), "db.query", 5, 20);
    t.span(Some(root), "cache.get", 8, 12);
    t.span(Some(root), "http.call", 25, 90);
    let r = t.analyze();
    assert_tiles(&r);
    assert!(!r.structured);
    assert_eq!(
        path(&r),
        expect(&[
            ("GET /answer", "self", 5),
            ("db.query", "self", 15),
            ("GET /answer", "self", 5),
            ("http.call", "self", 65),
            ("GET /answer", "self", 10),
        ])
    );
    // cache.get ended at 12 and nothing on the path started before 25 after it.
    assert_eq!(slack_ms(&r, "cache.get"), Some(13));
    // Without spanline attributes every span is its own contributor.
    let keys: Vec<(&str, u64)> = r
        .contributions
        .iter()
        .map(|c| (&*c.key, c.duration_ns / MS))
        .collect();
    assert_eq!(
        keys,
        vec![("http.call", 65), ("GET /answer", 20), ("db.query", 15)]
    );
}

#[test]
fn overlapping_child_covers_the_time_before_the_next_one_started() {
    // Jaeger ignores `a` here (it ends after b started) and charges 0-50 to the parent.
    let mut t = Trace::default();
    let root = t.span(None, "parent", 0, 100);
    t.span(Some(root), "a", 0, 60);
    t.span(Some(root), "b", 50, 100);
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(path(&r), expect(&[("a", "self", 50), ("b", "self", 50)]));
}

#[test]
fn consumer_spans_are_blocking_when_the_parent_waited() {
    // Jaeger drops PRODUCER/CONSUMER children as non-blocking; here the
    // request demonstrably waited for the consumer, so it is on the path.
    let mut t = Trace::default();
    let root = t.span(None, "request", 0, 50);
    let p = t.span(Some(root), "send jobs", 1, 3);
    t.kind(p, spanline_critpath::SpanKind::Producer);
    let c = t.span(Some(root), "process jobs", 10, 45);
    t.kind(c, spanline_critpath::SpanKind::Consumer);
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(
        path(&r),
        expect(&[
            ("request", "self", 1),
            ("send jobs", "self", 2),
            ("request", "self", 7),
            ("process jobs", "self", 35),
            ("request", "self", 5),
        ])
    );
}

#[test]
fn child_entirely_after_its_parent_is_clamped_off_the_path() {
    let mut t = Trace::default();
    let root = t.span(None, "request", 0, 50);
    let p = t.span(Some(root), "send jobs", 1, 3);
    t.span(Some(p), "process jobs", 10, 45);
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(
        path(&r),
        expect(&[
            ("request", "self", 1),
            ("send jobs", "self", 2),
            ("request", "self", 47)
        ])
    );
    assert!(
        r.diagnostics
            .iter()
            .any(|d| d.kind == DiagnosticKind::ClockSkew)
    );
}

#[test]
fn skewed_clocks_are_clamped_to_the_parent() {
    let mut t = Trace::default();
    let root = t.span(None, "client call", 10, 110);
    let a = t.span(Some(root), "server A", 5, 60); // starts 5 ms before its parent
    t.service(a, "svc-a");
    let b = t.span(Some(root), "server B", 70, 120); // ends 10 ms after its parent
    t.service(b, "svc-b");
    t.span(Some(b), "B inner", 80, 118);
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(
        path(&r),
        expect(&[
            ("server A", "self", 50),
            ("client call", "self", 10),
            ("server B", "self", 10),
            ("B inner", "self", 30),
        ])
    );
    let skews = r
        .diagnostics
        .iter()
        .filter(|d| d.kind == DiagnosticKind::ClockSkew)
        .count();
    // A and B; "B inner" lies inside B's own interval and is clamped along
    // with B without a diagnostic of its own.
    assert_eq!(skews, 2, "{:#?}", r.diagnostics);
    let b_info = r
        .spans
        .iter()
        .find(|s| &*s.name == "server B")
        .expect("span");
    assert_eq!(
        (b_info.start_ns, b_info.end_ns),
        (T0 + 70 * MS, T0 + 110 * MS)
    );
    assert_eq!(b_info.raw_end_ns, T0 + 120 * MS);
}

#[test]
fn a_server_span_may_end_after_its_client_but_not_start_before_it() {
    // The server closes its span after writing the response, which the
    // client may already have read: a late end is not clock skew.
    let mut t = Trace::default();
    let root = t.span(None, "rag", 0, 100);
    let client = t.span(Some(root), "Run (client)", 10, 50);
    t.kind(client, SpanKind::Client);
    let server = t.span(Some(client), "Run (server)", 12, 54);
    t.kind(server, SpanKind::Server);
    t.span(Some(server), "rerank", 13, 53);
    let r = t.analyze();
    assert_tiles(&r);
    assert!(r.diagnostics.is_empty(), "{:#?}", r.diagnostics);

    // Starting 4 ms before the client is still reported.
    let mut t = Trace::default();
    let root = t.span(None, "rag", 0, 100);
    let client = t.span(Some(root), "Run (client)", 10, 50);
    t.kind(client, SpanKind::Client);
    let server = t.span(Some(client), "Run (server)", 6, 48);
    t.kind(server, SpanKind::Server);
    let r = t.analyze();
    let skews: Vec<_> = r
        .diagnostics
        .iter()
        .filter(|d| d.kind == DiagnosticKind::ClockSkew)
        .collect();
    assert_eq!(skews.len(), 1, "{:#?}", r.diagnostics);
    assert!(
        skews[0].message.contains("starts 4"),
        "{}",
        skews[0].message
    );
}

#[test]
fn orphans_root_their_own_subtree_and_are_reported() {
    let mut t = Trace::default();
    let root = t.span(None, "root", 0, 100);
    t.span(Some(root), "a", 10, 50);
    let late = t.span(Some(spanline_critpath::SpanId(0xdead)), "late", 20, 40);
    t.span(Some(late), "late child", 25, 30);
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(
        path(&r),
        expect(&[
            ("root", "self", 10),
            ("a", "self", 40),
            ("root", "self", 50)
        ])
    );
    assert_eq!(r.detached.len(), 1);
    let d = &r.detached[0];
    assert_eq!((d.reason, &*d.name), (DetachReason::Orphan, "late"));
    let dp: Vec<(&str, u64)> = d
        .segments
        .iter()
        .map(|s| (&*s.span_name, s.duration_ns / MS))
        .collect();
    assert_eq!(dp, vec![("late", 5), ("late child", 5), ("late", 10)]);
    assert!(
        r.diagnostics
            .iter()
            .any(|d| d.kind == DiagnosticKind::Orphan && d.message.contains("000000000000dead"))
    );
}

#[test]
fn trace_without_root_uses_the_longest_orphan() {
    let mut t = Trace::default();
    let missing = Some(spanline_critpath::SpanId(0xabc));
    t.span(missing, "short", 0, 10);
    let long = t.span(missing, "long", 5, 50);
    t.span(Some(long), "child", 10, 20);
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(&*r.root_name, "long");
    assert_eq!(
        path(&r),
        expect(&[
            ("long", "self", 5),
            ("child", "self", 10),
            ("long", "self", 30)
        ])
    );
    assert!(
        r.diagnostics
            .iter()
            .any(|d| d.kind == DiagnosticKind::NoRoot)
    );
}

#[test]
fn parent_cycle_is_broken_and_never_loops() {
    let mut t = Trace::default();
    let root = t.span(None, "root", 0, 100);
    t.span(Some(root), "ok", 0, 100);
    let a = t.span(None, "A", 10, 50);
    let b = t.span(Some(a), "B", 20, 40);
    let c = t.span(Some(b), "C", 25, 30);
    t.get(a).parent_span_id = Some(c); // A -> C -> B -> A
    let selfish = t.span(None, "S", 60, 70);
    t.get(selfish).parent_span_id = Some(selfish);
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(path(&r), expect(&[("ok", "self", 100)]));
    let cycles = r
        .diagnostics
        .iter()
        .filter(|d| d.kind == DiagnosticKind::ParentCycle)
        .count();
    assert_eq!(cycles, 2, "{:#?}", r.diagnostics);
    let d = r
        .detached
        .iter()
        .find(|d| &*d.name == "A")
        .expect("cycle broken at A (earliest start)");
    assert_eq!(d.reason, DetachReason::ParentCycle);
    let dp: Vec<(&str, u64)> = d
        .segments
        .iter()
        .map(|s| (&*s.span_name, s.duration_ns / MS))
        .collect();
    assert_eq!(
        dp,
        vec![("A", 10), ("B", 5), ("C", 5), ("B", 10), ("A", 10)]
    );
    assert!(
        r.detached
            .iter()
            .any(|d| &*d.name == "S" && d.reason == DetachReason::ParentCycle)
    );
    assert_eq!(r.spans.len(), 6);
}

#[test]
fn end_before_start_is_repaired_and_reported() {
    let mut t = Trace::default();
    let root = t.span(None, "root", 0, 10);
    let bad = t.span(Some(root), "backwards", 5, 2);
    let _ = bad;
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(path(&r), expect(&[("root", "self", 10)]));
    assert!(
        r.diagnostics
            .iter()
            .any(|d| d.kind == DiagnosticKind::EndBeforeStart)
    );
}

#[test]
fn duplicate_span_ids_keep_the_first() {
    let mut t = Trace::default();
    let root = t.span(None, "root", 0, 10);
    t.span(Some(root), "child", 2, 8);
    let dup = t.spans[1].clone();
    t.spans.push(dup);
    let r = t.analyze();
    assert_eq!(r.spans.len(), 2);
    assert!(
        r.diagnostics
            .iter()
            .any(|d| d.kind == DiagnosticKind::DuplicateSpanId)
    );
}

#[test]
fn deep_chains_do_not_recurse() {
    let mut t = Trace::default();
    let mut parent = t.span(None, "root", 0, 200_000);
    for i in 1..100_000u64 {
        parent = t.span(Some(parent), "level", i, 200_000 - i);
    }
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(r.spans.len(), 100_000);
}
