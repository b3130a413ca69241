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

/// One bundled question, the chunks that answer it and the fact its
/// answer must state.
#[derive(Debug, Clone, Deserialize)]
pub struct Question {
    /// The question.
    pub question: String,
    /// Chunk ids (relative to `docs/`) that hold the answer.
    pub expected: Vec<String>,
    /// A regular expression (matched case-insensitively) a correct answer
    /// matches: the fact, in the words of the docs.
    pub answer_must_match: String,
}

impl Question {
    /// The compiled [`Question::answer_must_match`]; `None` when it is not
    /// a valid expression (a test checks the bundled ones are).
    pub fn fact(&self) -> Option<regex::Regex> {
        regex::RegexBuilder::new(&self.answer_must_match)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .ok()
    }

    /// Whether `answer` states the fact.
    pub fn is_answered_by(&self, answer: &str) -> bool {
        self.fact().is_some_and(|re| re.is_match(answer))
    }
}

/// Answer quality over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AnswerQuality {
    /// Answers scored.
    pub answers: usize,
    /// Answers stating their question's fact.
    pub correct: usize,
    /// Mean share of answer sentences supported by a cited passage.
    pub groundedness: f64,
    /// The same for the model's own text (before any fallback).
    pub generated_groundedness: f64,
    /// Answers citing at least one passage.
    pub citing: usize,
    /// Answers citing one of the chunks the question names.
    pub citing_expected: usize,
    /// Answers that are the extractive fallback.
    pub extractive: usize,
}

impl AnswerQuality {
    /// `correct / answers` (0 with no answers).
    pub fn accuracy(&self) -> f64 {
        if self.answers == 0 {
            0.0
        } else {
            self.correct as f64 / self.answers as f64
        }
    }
}

/// Score answers against their questions.
pub fn answer_quality<'a>(
    results: impl IntoIterator<Item = (&'a Question, &'a crate::Answer)>,
) -> AnswerQuality {
    let mut q = AnswerQuality::default();
    for (question, answer) in results {
        q.answers += 1;
        q.correct += usize::from(question.is_answered_by(&answer.text));
        q.groundedness += answer.groundedness;
        q.generated_groundedness += answer.generated_groundedness;
        let cited: Vec<&str> = answer
            .citations
            .iter()
            .filter(|c| c.cited)
            .map(|c| c.id.as_str())
            .collect();
        q.citing += usize::from(!cited.is_empty());
        q.citing_expected += usize::from(
            cited
                .iter()
                .any(|c| question.expected.iter().any(|e| e == c)),
        );
        q.extractive += usize::from(answer.extractive);
    }
    if q.answers > 0 {
        q.groundedness /= q.answers as f64;
        q.generated_groundedness /= q.answers as f64;
    }
    q
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
        assert!(q.len() >= 30, "{}", q.len());
        assert!(q.iter().all(|q| !q.expected.is_empty()));
        assert!(q.iter().all(|q| q.fact().is_some()), "every fact compiles");
    }

    #[test]
    fn answers_are_scored_on_the_fact_and_the_citation() {
        let question = Question {
            question: "Which model?".into(),
            expected: vec!["models.md#which".into()],
            answer_must_match: "smollm2|llama".into(),
        };
        assert!(question.is_answered_by("It is SmolLM2-135M."));
        assert!(!question.is_answered_by("A Kafka broker."));
        let answer = |text: &str, cited: &str, g: f64| crate::Answer {
            text: text.into(),
            citations: vec![crate::app::Citation {
                marker: 1,
                id: cited.into(),
                cited: true,
            }],
            ranked: Vec::new(),
            usage: Default::default(),
            extractive: false,
            generated: text.into(),
            groundedness: g,
            generated_groundedness: g,
        };
        let a = answer("SmolLM2 [1]", "models.md#which", 1.0);
        let b = answer("Kafka [1]", "kafka.md#x", 0.0);
        let q = answer_quality([(&question, &a), (&question, &b)]);
        assert_eq!(
            (q.answers, q.correct, q.citing, q.citing_expected),
            (2, 1, 2, 1)
        );
        assert!((q.accuracy() - 0.5).abs() < 1e-9 && (q.groundedness - 0.5).abs() < 1e-9);
        let bad = Question {
            answer_must_match: "(".into(),
            ..question
        };
        assert!(!bad.is_answered_by("("), "an invalid fact matches nothing");
    }
}
