//! What the example prints: the critical path of a request, aggregates
//! over many, the waterfall page, and retrieval quality.

use std::time::Duration;

use serde::Deserialize;
use spanline::core::ScoredDocument;
use spanline::telemetry::SpanRecorder;
use spanline_critpath::{Span, Stats, TraceReport, analyze, render, stats};

/// The pipeline root's span name.
pub const ROOT: &str = "invoke_workflow rag";

/// Critical-path reports of every finished `rag` request in `recorder`.
pub fn reports(recorder: &SpanRecorder) -> Vec<TraceReport> {
    let spans: Vec<Span> = spanline::telemetry::critpath::from_recorder(recorder);
    analyze(&spans)
        .into_iter()
        .filter(|r| &*r.root_name == ROOT)
        .collect()
}

/// Wait (bounded) until every request's Kafka `process` span has ended:
/// the worker ends it after its reply is delivered, a moment after the
/// caller resumes.
pub async fn settle(recorder: &SpanRecorder, requests: usize, process_span: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while recorder.find_all(process_span).len() < requests && tokio::time::Instant::now() < deadline
    {
        // allow-sleep: polling the recorder for the worker's last span, bounded.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The terminal report of one request.
pub fn trace(report: &TraceReport) -> String {
    render::text::trace(report)
}

/// Aggregates over requests: per-key p50/p95/p99 and critical-path share
/// (stages, hops and queues).
pub fn aggregate(reports: &[TraceReport]) -> Stats {
    stats(reports)
}

/// The aggregate table.
pub fn aggregate_text(stats: &Stats) -> String {
    render::text::stats(stats)
}

/// The waterfall page: the slowest request's critical path and the
/// aggregate.
pub fn waterfall(report: Option<&TraceReport>, stats: Option<&Stats>) -> String {
    render::html::page("spanline RAG example", report, stats)
}

/// One bundled question and the chunks that answer it.
#[derive(Debug, Clone, Deserialize)]
pub struct Question {
    /// The question.
    pub question: String,
    /// Chunk ids (relative to `docs/`) that hold the answer.
    pub expected: Vec<String>,
}

/// The bundled question set (about this repository's `docs/`).
pub fn questions() -> Vec<Question> {
    serde_json::from_str(include_str!("../questions.json")).unwrap_or_default()
}

/// Recall@k and mean reciprocal rank.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quality {
    /// Questions scored.
    pub questions: usize,
    /// Mean fraction of expected chunks among the first `k`.
    pub recall_at_k: f64,
    /// Mean of 1 / rank of the first expected chunk (0 when absent).
    pub mrr: f64,
    /// The `k`.
    pub k: usize,
}

/// Score ranked results against the expected chunks.
pub fn quality<'a>(
    results: impl IntoIterator<Item = (&'a [String], &'a [ScoredDocument])>,
    k: usize,
) -> Quality {
    let mut q = Quality {
        k,
        ..Quality::default()
    };
    for (expected, ranked) in results {
        if expected.is_empty() {
            continue;
        }
        q.questions += 1;
        let top: Vec<&str> = ranked
            .iter()
            .take(k)
            .map(|d| d.document.id.as_str())
            .collect();
        let found = expected
            .iter()
            .filter(|e| top.contains(&e.as_str()))
            .count();
        q.recall_at_k += found as f64 / expected.len() as f64;
        if let Some(rank) = ranked
            .iter()
            .position(|d| expected.iter().any(|e| *e == d.document.id))
        {
            q.mrr += 1.0 / (rank + 1) as f64;
        }
    }
    if q.questions > 0 {
        q.recall_at_k /= q.questions as f64;
        q.mrr /= q.questions as f64;
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use spanline::core::Document;

    fn ranked(ids: &[&str]) -> Vec<ScoredDocument> {
        ids.iter()
            .map(|i| ScoredDocument::new(Document::new(*i, ""), 0.0))
            .collect()
    }

    #[test]
    fn recall_and_mrr() {
        let e1 = ["a".to_string(), "b".to_string()];
        let r1 = ranked(&["x", "a", "y", "z", "w", "b"]);
        let e2 = ["c".to_string()];
        let r2 = ranked(&["c"]);
        let q = quality([(&e1[..], &r1[..]), (&e2[..], &r2[..])], 5);
        assert_eq!(q.questions, 2);
        assert!((q.recall_at_k - 0.75).abs() < 1e-9, "{q:?}");
        assert!((q.mrr - 0.75).abs() < 1e-9, "{q:?}");
    }

    #[test]
    fn the_bundled_questions_parse() {
        let q = questions();
        assert!(q.len() >= 10);
        assert!(q.iter().all(|q| !q.expected.is_empty()));
    }
}
