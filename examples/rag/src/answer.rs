//! How an answer is made from the reranked passages: evidence selection,
//! the prompt, decoding settings, and the check that the answer is
//! supported by the passages, with an extractive fallback
//! (docs/rag-example.md, "How an answer is made").

use std::str::FromStr;

use spanline::core::{
    Document, Generation, GenerationRequest, Message, RequestContext, Retrieved, Role,
    SamplingParams, ScoredDocument, StageError,
};
use spanline::models::BertEmbedder;

use crate::app::{Answer, Citation};
use crate::evidence::{self, Support};
use crate::rerank::scoring_sentences;

/// Metadata key on a prompt passage: its best sentences, one per line, each
/// `score<TAB>sentence`, best first (written by the evidence stage).
pub const EVIDENCE_KEY: &str = "rag.evidence";
/// Sentences in the prompt (across all prompt passages).
pub const EVIDENCE_SENTENCES: usize = 3;
/// Weight of the lexical match next to the MiniLM cosine when scoring a
/// sentence against the question.
pub const LEXICAL_WEIGHT: f32 = 0.3;
/// Words of each passage placed in the prompt when passages are given whole.
const PROMPT_WORDS: usize = 80;

/// How much of the answer machinery runs; each level adds one technique
/// to the one before (the table in docs/rag-example.md measures each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Strategy {
    /// The top passages, cut to 80 words, under a generic instruction;
    /// repetition penalty 1.1.
    Passages,
    /// The passages' sentences most relevant to the question instead.
    Evidence,
    /// A short prompt with one worked example.
    Prompt,
    /// Greedy decoding without repetition penalty, stopping at the end of
    /// the first line.
    Decoding,
    /// Unsupported answer sentences dropped; an answer with none left
    /// becomes the best evidence sentence (extractive).
    #[default]
    Fallback,
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "passages" => Ok(Strategy::Passages),
            "evidence" => Ok(Strategy::Evidence),
            "prompt" => Ok(Strategy::Prompt),
            "decoding" => Ok(Strategy::Decoding),
            "fallback" => Ok(Strategy::Fallback),
            _ => Err(format!(
                "unknown answer strategy {s:?} (passages, evidence, prompt, decoding, fallback)"
            )),
        }
    }
}

/// Metadata key on the first prompt passage: the question (the cite stage
/// checks the answer against what was asked).
pub const QUESTION_KEY: &str = "rag.question";

/// Write `doc`'s best sentences ([`EVIDENCE_KEY`]): each scored by its
/// MiniLM cosine to the question (`cosines`, one per sentence) plus
/// [`LEXICAL_WEIGHT`] × the share of the question's words it holds.
pub fn annotate(doc: &mut ScoredDocument, question: &str, sentences: &[String], cosines: &[f32]) {
    let question_words = evidence::content_words(question);
    let mut scored: Vec<(f32, &String)> = sentences
        .iter()
        .zip(cosines)
        .map(|(s, c)| {
            (
                c + LEXICAL_WEIGHT * evidence::lexical(&question_words, s) as f32,
                s,
            )
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let lines: Vec<String> = scored
        .iter()
        .take(EVIDENCE_SENTENCES)
        .map(|(score, s)| format!("{score:.4}\t{s}"))
        .collect();
    let mut d: Document = (*doc.document).clone();
    d.metadata.insert(EVIDENCE_KEY.into(), lines.join("\n"));
    doc.document = d.into();
}

/// The evidence stage: the first `docs` passages' best sentences. The
/// sentence max-sim reranker has already scored them (on its worker) when
/// it ran; otherwise (another reranker, or its fallback) they are scored
/// here. The question is kept on the first passage ([`QUESTION_KEY`]).
pub async fn select_evidence(
    embedder: &BertEmbedder,
    mut r: Retrieved,
    docs: usize,
    ctx: &RequestContext,
) -> Result<Retrieved, StageError> {
    let n = docs.min(r.documents.len());
    let scored = r.documents[..n]
        .iter()
        .all(|d| d.document.metadata.contains_key(EVIDENCE_KEY));
    if !scored {
        crate::rerank::score_sentences(embedder, &r.query.text, &mut r.documents[..n], ctx).await?;
    }
    if let Some(first) = r.documents.first_mut() {
        let mut d: Document = (*first.document).clone();
        d.metadata.insert(QUESTION_KEY.into(), r.query.text.clone());
        first.document = d.into();
    }
    Ok(r)
}

/// The selected evidence: `(passage index, score, sentence)`, best first,
/// at most [`EVIDENCE_SENTENCES`].
pub fn evidence_of(documents: &[ScoredDocument], docs: usize) -> Vec<(usize, f32, String)> {
    let mut all: Vec<(usize, f32, String)> = documents
        .iter()
        .take(docs)
        .enumerate()
        .flat_map(|(i, d)| {
            d.document
                .metadata
                .get(EVIDENCE_KEY)
                .map(|v| {
                    v.lines()
                        .filter_map(|l| {
                            let (score, s) = l.split_once('\t')?;
                            Some((i, score.parse::<f32>().ok()?, s.to_string()))
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(EVIDENCE_SENTENCES);
    all
}

const INSTRUCTIONS: &str = "You answer questions about a software project using only the \
numbered context passages. Answer in two or three sentences and cite the passages you use as \
[1], [2] or [3].";

const SHORT_INSTRUCTIONS: &str =
    "Answer the question with one sentence taken from the facts, then the fact's number.";
const EXAMPLE_FACTS: &str = "Facts:\n[1] Spans are exported in batches every five seconds.\n\
[2] Files larger than 4 MiB are skipped with a warning.\n\
Question: What happens to files larger than 4 MiB?";
const EXAMPLE_ANSWER: &str = "Files larger than 4 MiB are skipped with a warning [2].";

/// The sampling parameters of `strategy` (greedy throughout: the same
/// question gives the same answer).
pub fn params(strategy: Strategy, max_tokens: u32) -> SamplingParams {
    if strategy >= Strategy::Decoding {
        SamplingParams {
            max_tokens,
            temperature: 0.0,
            // Copying from the evidence repeats its tokens: no penalty.
            repetition_penalty: 1.0,
            stop: vec!["\n".into(), "Question:".into(), "Facts:".into()],
            ..SamplingParams::default()
        }
    } else {
        SamplingParams {
            max_tokens,
            repetition_penalty: 1.1,
            ..SamplingParams::default()
        }
    }
}

/// The generation request for `r` under `strategy`.
pub fn build_prompt(
    r: Retrieved,
    docs: usize,
    strategy: Strategy,
    max_tokens: u32,
) -> GenerationRequest {
    let params = params(strategy, max_tokens);
    let question = r.query.text.clone();
    let messages = match strategy {
        Strategy::Passages => {
            let mut system = format!("{INSTRUCTIONS}\n\nContext:\n");
            for (i, d) in r.documents.iter().take(docs).enumerate() {
                // Passages are cut to keep the prompt (and the CPU prefill) short.
                let words: Vec<&str> = d.document.text.split_whitespace().collect();
                let text = words[..words.len().min(PROMPT_WORDS)].join(" ");
                system.push_str(&format!("[{}] {text}\n\n", i + 1));
            }
            vec![
                Message::new(Role::System, system),
                Message::new(Role::User, question),
            ]
        }
        Strategy::Evidence => {
            let mut system = format!("{INSTRUCTIONS}\n\nContext:\n");
            for (i, _, s) in evidence_of(&r.documents, docs) {
                system.push_str(&format!("[{}] {s}\n", i + 1));
            }
            vec![
                Message::new(Role::System, system),
                Message::new(Role::User, question),
            ]
        }
        _ => {
            let mut facts = String::from("Facts:\n");
            for (i, _, s) in evidence_of(&r.documents, docs) {
                facts.push_str(&format!("[{}] {s}\n", i + 1));
            }
            facts.push_str(&format!("Question: {question}"));
            vec![
                Message::new(Role::System, SHORT_INSTRUCTIONS),
                Message::new(Role::User, EXAMPLE_FACTS),
                Message::new(Role::Assistant, EXAMPLE_ANSWER),
                Message::new(Role::User, facts),
            ]
        }
    };
    GenerationRequest {
        messages,
        params,
        context: r.documents,
    }
}

/// Check the generated text against the prompt passages and make the
/// answer: groundedness is the share of answer sentences supported by a
/// sentence of a passage ([`evidence::support`]); the passages holding the
/// support are the ones cited (their markers are added when the text lacks
/// them). With [`Strategy::Fallback`], unsupported sentences are dropped,
/// and an answer left with none is the best evidence sentence instead
/// (`extractive`).
pub fn cite(g: Generation, docs: usize, strategy: Strategy) -> Answer {
    let n = docs.min(g.context.len());
    let passages: Vec<Vec<String>> = g.context[..n]
        .iter()
        .map(|d| scoring_sentences(&d.document))
        .collect();
    let question = g
        .context
        .first()
        .and_then(|d| d.document.metadata.get(QUESTION_KEY))
        .cloned()
        .unwrap_or_default();
    let generated = evidence::strip_markers(g.text.trim()).trim().to_string();
    let support = evidence::support(&generated, &question, &passages);
    let groundedness = share_supported(&support);
    let mut extractive = false;
    let (text, used): (String, Vec<usize>) = if strategy >= Strategy::Fallback {
        let kept: Vec<&Support> = support.iter().filter(|s| s.supported()).collect();
        if kept.is_empty() {
            extractive = true;
            match evidence_of(&g.context, n).into_iter().next() {
                Some((i, _, s)) => (s, vec![i]),
                None => (generated.clone(), Vec::new()),
            }
        } else {
            let text: Vec<&str> = kept.iter().map(|s| s.sentence.trim()).collect();
            (
                text.join(" "),
                kept.iter().filter_map(|s| s.passage).collect(),
            )
        }
    } else {
        let mut used: Vec<usize> = support
            .iter()
            .filter(|s| s.supported())
            .filter_map(|s| s.passage)
            .collect();
        // Markers the model wrote count too.
        used.extend((0..n).filter(|i| g.text.contains(&format!("[{}]", i + 1))));
        (generated.clone(), used)
    };
    let mut used = used;
    used.sort_unstable();
    used.dedup();
    let mut text = text.trim().to_string();
    for i in &used {
        let marker = format!("[{}]", i + 1);
        if !text.contains(&marker) {
            text.push(' ');
            text.push_str(&marker);
        }
    }
    let final_support = evidence::support(&evidence::strip_markers(&text), &question, &passages);
    let citations = g.context[..n]
        .iter()
        .enumerate()
        .map(|(i, d)| Citation {
            marker: i + 1,
            id: d.document.id.clone(),
            cited: used.contains(&i),
        })
        .collect();
    Answer {
        text,
        citations,
        ranked: g.context,
        usage: g.usage,
        extractive,
        generated,
        groundedness: share_supported(&final_support),
        generated_groundedness: groundedness,
    }
}

fn share_supported(support: &[Support]) -> f64 {
    if support.is_empty() {
        return 0.0;
    }
    support.iter().filter(|s| s.supported()).count() as f64 / support.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use spanline::core::{FinishReason, GenerationTimings, Query, TokenUsage};

    fn passage(id: &str, text: &str, evidence: &[(f32, &str)]) -> ScoredDocument {
        let mut d = Document::new(id, text);
        let lines: Vec<String> = evidence.iter().map(|(s, t)| format!("{s}\t{t}")).collect();
        d.metadata.insert(EVIDENCE_KEY.into(), lines.join("\n"));
        ScoredDocument::new(d, 1.0)
    }

    fn context() -> Vec<ScoredDocument> {
        let a = "The process span is a child of the send span.";
        let b = "Workers in one consumer group share a partitioned topic.";
        vec![
            passage("kafka#rules", a, &[(0.9, a)]),
            passage("kafka#groups", b, &[(0.4, b)]),
            passage("other", "Unrelated words about nothing here.", &[]),
        ]
    }

    fn generation(text: &str) -> Generation {
        Generation {
            text: text.into(),
            usage: TokenUsage::default(),
            finish_reason: FinishReason::Stop,
            response_model: None,
            timings: GenerationTimings::default(),
            context: context(),
        }
    }

    #[test]
    fn the_evidence_prompt_lists_the_best_sentences_with_their_passage_number() {
        let r = Retrieved {
            query: Query::new("How does the trace continue?"),
            documents: context(),
        };
        let req = build_prompt(r, 3, Strategy::Fallback, 48);
        let facts = &req.messages.last().unwrap().content;
        assert!(facts.starts_with("Facts:\n[1] The process span is a child"));
        assert!(facts.contains("[2] Workers in one consumer group"));
        assert!(facts.ends_with("Question: How does the trace continue?"));
        assert_eq!(req.messages[2].role, Role::Assistant);
        assert_eq!(req.params.repetition_penalty, 1.0);
        assert_eq!(req.context.len(), 3);
        let old = build_prompt(
            Retrieved {
                query: Query::new("q"),
                documents: context(),
            },
            3,
            Strategy::Passages,
            48,
        );
        assert_eq!(old.messages.len(), 2);
        assert!(old.messages[0].content.contains("[3] Unrelated"));
    }

    #[test]
    fn a_supported_answer_cites_its_passage() {
        let a = cite(
            generation("The process span is a child of the send span."),
            3,
            Strategy::Fallback,
        );
        assert!(!a.extractive);
        assert_eq!(a.text, "The process span is a child of the send span. [1]");
        assert_eq!(a.groundedness, 1.0);
        let cited: Vec<bool> = a.citations.iter().map(|c| c.cited).collect();
        assert_eq!(cited, [true, false, false]);
    }

    #[test]
    fn invented_sentences_are_dropped_and_an_unsupported_answer_turns_extractive() {
        let a = cite(
            generation(
                "The process span is a child of the send span [1]. It is broadcast by a plugin to brokers.",
            ),
            3,
            Strategy::Fallback,
        );
        assert!(!a.extractive);
        assert_eq!(a.text, "The process span is a child of the send span. [1]");
        assert_eq!(a.groundedness, 1.0);
        assert_eq!(a.generated_groundedness, 0.5);

        let b = cite(
            generation("Spanline is a message broker with plugins."),
            3,
            Strategy::Fallback,
        );
        assert!(b.extractive);
        assert_eq!(b.text, "The process span is a child of the send span. [1]");
        assert_eq!(b.generated, "Spanline is a message broker with plugins.");
        assert_eq!(b.groundedness, 1.0);
        assert_eq!(b.generated_groundedness, 0.0);

        // Without the fallback the answer stays, scored as ungrounded.
        let c = cite(
            generation("Spanline is a message broker with plugins."),
            3,
            Strategy::Decoding,
        );
        assert!(!c.extractive);
        assert_eq!(c.groundedness, 0.0);
        assert!(c.citations.iter().all(|c| !c.cited));
    }
}
