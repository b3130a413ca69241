//! Exact critical path from spanline's structural attributes.

mod common;

use common::*;
use spanline_critpath::SegmentType;
use spanline_critpath::semconv as sc;

#[test]
fn sequential_steps() {
    let mut t = Trace::default();
    let root = t.span(None, "invoke_workflow rag", 0, 100);
    t.stage(root, "spanline.preprocess normalize", "normalize", 0, 2, 10);
    t.stage(root, "embeddings hashing-256", "embed", 1, 12, 30);
    t.stage(root, "chat extractive", "chat", 2, 31, 95);
    let r = t.analyze();
    assert_tiles(&r);
    assert!(r.structured);
    assert_eq!(
        path(&r),
        expect(&[
            ("invoke_workflow rag", "self", 2),
            ("spanline.preprocess normalize", "stage", 8),
            ("invoke_workflow rag", "self", 2),
            ("embeddings hashing-256", "stage", 18),
            ("invoke_workflow rag", "self", 1),
            ("chat extractive", "stage", 64),
            ("invoke_workflow rag", "self", 5),
        ])
    );
    assert_eq!(r.duration_ns, 100 * MS);
    let top = r.dominant().expect("has a dominant contributor");
    assert_eq!(&*top.key, "chat");
    assert!((top.share - 0.64).abs() < 1e-9);
    assert!(r.spans.iter().all(|s| s.on_path));
}

#[test]
fn parallel_group_critical_branch_is_last_to_end() {
    let t = sample_pipeline(1);
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(
        path(&r),
        expect(&[
            ("invoke_workflow rag", "self", 2),
            ("spanline.preprocess normalize", "stage", 8),
            ("invoke_workflow rag", "self", 2),
            ("retrieval docs-dense", "stage", 38),
            ("invoke_workflow rag", "self", 2),
            ("spanline.stage fuse", "stage", 8),
            ("invoke_workflow rag", "self", 1),
            ("spanline.rerank keyword", "stage", 19),
            ("invoke_workflow rag", "self", 1),
            ("spanline.rerank identity", "stage", 4),
            ("invoke_workflow rag", "self", 1),
            ("chat extractive", "stage", 12),
            ("invoke_workflow rag", "self", 2),
        ])
    );
    // bm25 could have taken 20 ms longer (it ended at 30, the join at 50).
    assert_eq!(slack_ms(&r, "retrieval docs-bm25"), Some(20));
    assert_eq!(slack_ms(&r, "retrieval docs-dense"), Some(0));
    let off: Vec<&str> = r.off_path_stages().iter().map(|s| &*s.name).collect();
    assert_eq!(off, vec!["retrieval docs-bm25"]);
}

#[test]
fn parallel_group_when_the_later_starting_branch_ends_last() {
    let mut t = Trace::default();
    let root = t.span(None, "invoke_workflow p", 0, 50);
    let a = t.stage(root, "a", "a", 0, 0, 30);
    let b = t.stage(root, "b", "b", 0, 5, 45);
    for (i, id) in [a, b].into_iter().enumerate() {
        t.attr(id, sc::PARALLEL_GROUP, 0i64)
            .attr(id, sc::PARALLEL_BRANCH, i as i64);
    }
    let r = t.analyze();
    assert_tiles(&r);
    // b is the critical branch; the 5 ms before it started is the pipeline's own time.
    assert_eq!(
        path(&r),
        expect(&[
            ("invoke_workflow p", "self", 5),
            ("b", "stage", 40),
            ("invoke_workflow p", "self", 5)
        ])
    );
    assert_eq!(slack_ms(&r, "a"), Some(15));
}

#[test]
fn a_branch_that_starts_when_its_sibling_ends_waited_for_it() {
    // Both branches are joined in one task: CPU-bound `a` ran to completion
    // before `b` was first polled, so `b`'s late start is `a`'s time, not
    // the pipeline's.
    let mut t = Trace::default();
    let root = t.span(None, "invoke_workflow p", 0, 50);
    let a = t.stage(root, "a", "a", 0, 0, 20);
    let b = t.stage(root, "b", "b", 0, 20, 45);
    for (i, id) in [a, b].into_iter().enumerate() {
        t.attr(id, sc::PARALLEL_GROUP, 0i64)
            .attr(id, sc::PARALLEL_BRANCH, i as i64);
    }
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(
        path(&r),
        expect(&[
            ("a", "stage", 20),
            ("b", "stage", 25),
            ("invoke_workflow p", "self", 5)
        ])
    );
}

#[test]
fn batch_items_waiting_for_a_slot_are_chained() {
    let mut t = Trace::default();
    let root = t.span(None, "invoke_workflow batch", 0, 50);
    t.stage(root, "prep", "prep", 0, 0, 10);
    // 4 items, concurrency 2: item 2 started when item 0 freed its slot.
    let items = [(10, 20), (10, 25), (20, 40), (25, 30)];
    for (i, (s, e)) in items.into_iter().enumerate() {
        let id = t.stage(root, &format!("embed item{i}"), "embed", 1, s, e);
        t.attr(id, sc::BATCH_INDEX, i as i64)
            .attr(id, sc::BATCH_SIZE, 4i64)
            .attr(id, sc::BATCH_CONCURRENCY, 2i64);
    }
    t.stage(root, "generate", "generate", 2, 40, 50);
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(
        path(&r),
        expect(&[
            ("prep", "stage", 10),
            ("embed item0", "stage", 10),
            ("embed item2", "stage", 20),
            ("generate", "stage", 10),
        ])
    );
    assert_eq!(slack_ms(&r, "embed item1"), Some(15));
    assert_eq!(slack_ms(&r, "embed item3"), Some(10));
    // Both items are charged to the stage "embed".
    let embed = r
        .contributions
        .iter()
        .find(|c| &*c.key == "embed")
        .expect("embed contributes");
    assert_eq!(embed.duration_ns, 30 * MS);
}

#[test]
fn fallback_puts_primary_and_fallback_on_the_path() {
    let mut t = Trace::default();
    let root = t.span(None, "invoke_workflow rag", 0, 40);
    t.stage(root, "fuse", "fuse", 0, 0, 10);
    let k = t.stage(root, "spanline.rerank keyword", "keyword", 1, 10, 25);
    t.attr(k, sc::FALLBACK_ACTION, "fallback")
        .attr(k, sc::FALLBACK_REASON, "timeout");
    let f = t.stage(root, "spanline.rerank identity", "identity", 1, 26, 30);
    t.attr(f, sc::FALLBACK_FOR, "keyword")
        .attr(f, sc::STEP_DEPENDS_ON, vec![1i64]);
    t.stage(root, "chat", "chat", 2, 30, 40);
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(
        path(&r),
        expect(&[
            ("fuse", "stage", 10),
            ("spanline.rerank keyword", "stage", 15),
            ("invoke_workflow rag", "self", 1),
            ("spanline.rerank identity", "stage", 4),
            ("chat", "stage", 10),
        ])
    );
}

#[test]
fn non_blocking_step_is_never_on_the_path() {
    let mut t = Trace::default();
    let root = t.span(None, "invoke_workflow rag", 0, 30);
    t.stage(root, "answer", "answer", 0, 0, 20);
    let audit = t.stage(root, "audit", "audit", 1, 5, 30);
    t.attr(audit, sc::STEP_BLOCKING, false);
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(
        path(&r),
        expect(&[("answer", "stage", 20), ("invoke_workflow rag", "self", 10)])
    );
    assert_eq!(slack_ms(&r, "audit"), None);
}

#[test]
fn nested_remote_hops() {
    let mut t = Trace::default();
    let root = t.span(None, "invoke_workflow rag", 0, 100);
    let retrieve = t.stage(root, "retrieval docs", "retrieve", 0, 10, 90);
    let hop1 = t.span(Some(retrieve), "spanline.worker.v1.StageWorker/Run", 12, 88);
    t.attr(hop1, sc::SEGMENT_TYPE, "hop")
        .kind(hop1, spanline_critpath::SpanKind::Client);
    let server1 = t.span(Some(hop1), "StageWorker/Run server", 20, 80);
    t.kind(server1, spanline_critpath::SpanKind::Server)
        .service(server1, "worker");
    let inner = t.span(Some(server1), "retrieval index", 25, 75);
    t.attr(inner, sc::STAGE_NAME, "index");
    let hop2 = t.span(Some(inner), "Index/Search", 30, 70);
    t.attr(hop2, sc::SEGMENT_TYPE, "hop");
    t.span(Some(hop2), "Index/Search server", 35, 65);
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(
        path(&r),
        expect(&[
            ("invoke_workflow rag", "self", 10),
            ("retrieval docs", "stage", 2),
            ("spanline.worker.v1.StageWorker/Run", "hop", 8),
            ("StageWorker/Run server", "hop", 5),
            ("retrieval index", "stage", 5),
            ("Index/Search", "hop", 5),
            ("Index/Search server", "hop", 30),
            ("Index/Search", "hop", 5),
            ("retrieval index", "stage", 5),
            ("StageWorker/Run server", "hop", 5),
            ("spanline.worker.v1.StageWorker/Run", "hop", 8),
            ("retrieval docs", "stage", 2),
            ("invoke_workflow rag", "self", 10),
        ])
    );
    // Hop time is charged to the hop, keyed by the hop span's name; the
    // segments keep their enclosing stage for context.
    let hop = r
        .contributions
        .iter()
        .find(|c| &*c.key == "Index/Search")
        .expect("inner hop contributes");
    assert_eq!(
        (hop.segment_type, hop.duration_ns),
        (SegmentType::Hop, 40 * MS)
    );
    let seg = r
        .segments
        .iter()
        .find(|s| &*s.span_name == "Index/Search server")
        .expect("segment");
    assert_eq!(seg.stage.as_deref(), Some("index"));
}

#[test]
fn kafka_request_reply_queue_wait_goes_to_the_queue() {
    let mut t = Trace::default();
    let root = t.span(None, "invoke_workflow rag", 0, 110);
    let stage = t.stage(root, "retrieval docs", "retrieve", 0, 10, 100);
    let hop = t.span(Some(stage), "send rag.retrieve", 11, 99);
    t.attr(hop, sc::SEGMENT_TYPE, "hop")
        .kind(hop, spanline_critpath::SpanKind::Producer);
    let q = t.span(Some(hop), "queue rag.retrieve", 12, 30);
    t.attr(q, sc::SEGMENT_TYPE, "queue");
    let process = t.span(Some(hop), "process rag.retrieve", 30, 80);
    t.kind(process, spanline_critpath::SpanKind::Consumer)
        .service(process, "worker");
    let remote = t.span(Some(process), "retrieval docs-dense", 32, 78);
    t.attr(remote, sc::STAGE_NAME, "dense");
    let reply = t.span(Some(hop), "queue rag.retrieve.reply", 80, 95);
    t.attr(reply, sc::SEGMENT_TYPE, "queue");
    let r = t.analyze();
    assert_tiles(&r);
    assert_eq!(
        path(&r),
        expect(&[
            ("invoke_workflow rag", "self", 10),
            ("retrieval docs", "stage", 1),
            ("send rag.retrieve", "hop", 1),
            ("queue rag.retrieve", "queue", 18),
            ("process rag.retrieve", "hop", 2),
            ("retrieval docs-dense", "stage", 46),
            ("process rag.retrieve", "hop", 2),
            ("queue rag.retrieve.reply", "queue", 15),
            ("send rag.retrieve", "hop", 4),
            ("retrieval docs", "stage", 1),
            ("invoke_workflow rag", "self", 10),
        ])
    );
    assert_eq!(r.queue_ns(), 33 * MS);
    for s in r
        .segments
        .iter()
        .filter(|s| s.segment_type == SegmentType::Queue)
    {
        assert_eq!(s.stage, None, "queue time is never attributed to a stage");
    }
    let retrieve = r
        .contributions
        .iter()
        .find(|c| &*c.key == "retrieve")
        .expect("stage");
    assert_eq!(retrieve.duration_ns, 2 * MS);
}

/// What spanline-kafka really emits for a request/reply: the PRODUCER
/// `send` span ends when the broker acknowledges (1 ms), long before the
/// worker consumes the message. The consumer side must not be squeezed
/// into the send span (no clock-skew diagnostics); the queue wait stays a
/// queue segment and the path still tiles the root.
#[test]
fn producer_spans_end_at_the_ack_and_the_consumer_side_is_kept() {
    use spanline_critpath::{DiagnosticKind, SpanKind};
    let mut t = Trace::new(77);
    let root = t.span(None, "invoke_workflow rag", 0, 100);
    let stage = t.stage(root, "retrieval dense", "dense", 0, 0, 90);
    t.attr(stage, sc::SEGMENT_TYPE, "hop")
        .kind(stage, SpanKind::Client);
    let send = t.span(Some(stage), "send rag.requests", 2, 3);
    t.kind(send, SpanKind::Producer);
    let queue = t.span(Some(send), "spanline.queue rag.requests", 2, 30);
    t.attr(queue, sc::SEGMENT_TYPE, "queue");
    let process = t.span(Some(send), "process rag.requests", 30, 80);
    t.kind(process, SpanKind::Consumer);
    let inner = t.span(Some(process), "retrieval docs", 31, 70);
    t.attr(inner, sc::STAGE_NAME, "docs");
    // The reply: sent from inside `process`, acknowledged at 72; `process`
    // ends at 80; the caller picks the reply up at 88.
    let reply = t.span(Some(process), "send rag.replies", 71, 72);
    t.kind(reply, SpanKind::Producer);
    let reply_queue = t.span(Some(reply), "spanline.queue rag.replies", 71, 88);
    t.attr(reply_queue, sc::SEGMENT_TYPE, "queue");
    let r = t.analyze();
    assert!(
        !r.diagnostics
            .iter()
            .any(|d| d.kind == DiagnosticKind::ClockSkew),
        "{:?}",
        r.diagnostics
    );
    assert_tiles(&r);
    let docs = r
        .spans
        .iter()
        .find(|s| &*s.name == "retrieval docs")
        .unwrap();
    assert_eq!(
        docs.end_ns - docs.start_ns,
        39 * 1_000_000,
        "not clamped into the send span"
    );
    let q = r
        .spans
        .iter()
        .find(|s| &*s.name == "spanline.queue rag.replies")
        .unwrap();
    assert_eq!(
        q.end_ns - q.start_ns,
        17 * 1_000_000,
        "the reply's wait is kept whole"
    );
    // Both waits are queue segments on the path; nothing is charged to a
    // stage for them.
    assert!(r.queue_ns() >= 28 * 1_000_000, "{:?}", path(&r));
}
