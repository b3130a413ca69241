//! The rerankers the gRPC worker can host (docs/rag-example.md,
//! "Reranking").
//!
//! Dense retrieval scores a chunk by one mean-pooled MiniLM embedding of
//! the whole chunk; re-embedding the same chunk with the same model (the
//! bi-encoder) reproduces that score. The sentence max-sim reranker scores
//! a chunk by its *best sentence*: every sentence is embedded on its own
//! and the chunk's score is the highest cosine to the question — late
//! interaction at sentence granularity, a signal dense retrieval does not
//! have (a chunk that answers in one sentence among unrelated ones is not
//! diluted). It is combined with the fused order by reciprocal rank.

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use spanline::core::{
    Embedder, Query, RequestContext, Reranker, ScoredDocument, StageDescriptor, StageError,
    StageKind,
};
use spanline::models::{BertEmbedder, BiEncoderReranker};

use crate::evidence;

/// Which reranker the worker hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RerankerKind {
    /// Keep the fused order (the worker only cuts it to `keep`).
    None,
    /// Cosine of the question's and the chunk's MiniLM embeddings (the
    /// signal dense retrieval already used).
    BiEncoder,
    /// The best sentence's cosine alone.
    MaxSim,
    /// The best sentence's rank fused with the fused order's rank.
    #[default]
    MaxSimFused,
}

impl FromStr for RerankerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(RerankerKind::None),
            "bi-encoder" => Ok(RerankerKind::BiEncoder),
            "maxsim" => Ok(RerankerKind::MaxSim),
            "maxsim-fused" => Ok(RerankerKind::MaxSimFused),
            _ => Err(format!(
                "unknown reranker {s:?} (none, bi-encoder, maxsim, maxsim-fused)"
            )),
        }
    }
}

/// Sentences of one chunk that are scored (the first ones: a long table
/// is cut, which bounds a rerank to 8 × 24 short embeddings).
pub const MAX_SCORED_SENTENCES: usize = 24;

/// Reciprocal-rank constant used when fusing the two orders.
const RRF_K: f32 = 60.0;

/// The reranker the example's gRPC worker runs.
#[derive(Debug, Clone)]
pub struct RagReranker {
    kind: RerankerKind,
    embedder: BertEmbedder,
    name: Arc<str>,
}

impl RagReranker {
    /// A reranker of `kind` over `embedder`, reported as model `name`.
    pub fn new(kind: RerankerKind, embedder: BertEmbedder, name: impl Into<Arc<str>>) -> Self {
        RagReranker {
            kind,
            embedder,
            name: name.into(),
        }
    }
}

/// The sentences a chunk is scored by: its own, or (for a chunk that is
/// all code or fragments) its first [`evidence::MAX_SENTENCE_WORDS`] words.
pub fn scoring_sentences(doc: &spanline::core::Document) -> Vec<String> {
    let mut s = evidence::sentences(&doc.text, doc.metadata.get("section").map(String::as_str));
    if !s.is_empty() {
        s.truncate(MAX_SCORED_SENTENCES);
        return s;
    }
    let words: Vec<&str> = doc.text.split_whitespace().collect();
    if words.is_empty() {
        return Vec::new();
    }
    vec![words[..words.len().min(evidence::MAX_SENTENCE_WORDS)].join(" ")]
}

/// Score every sentence of `documents` against the question (one batch of
/// MiniLM embeddings: the question and every sentence), write each
/// document's best sentences into its metadata (the evidence the prompt
/// takes, [`crate::answer::EVIDENCE_KEY`]) and return each document's best
/// cosine, in input order (−1 for a blank document).
pub async fn score_sentences(
    embedder: &BertEmbedder,
    question: &str,
    documents: &mut [ScoredDocument],
    ctx: &RequestContext,
) -> Result<Vec<f32>, StageError> {
    let per_doc: Vec<Vec<String>> = documents
        .iter()
        .map(|d| scoring_sentences(&d.document))
        .collect();
    let mut texts = vec![question.to_string()];
    texts.extend(per_doc.iter().flatten().cloned());
    let mut best = vec![-1.0f32; documents.len()];
    if texts.len() == 1 {
        return Ok(best);
    }
    let embeddings = embedder.embed(&texts, ctx).await?;
    let (q, rest) = embeddings
        .split_first()
        .ok_or_else(|| StageError::internal("no question embedding"))?;
    let mut rest = rest.iter();
    for ((d, sentences), best) in documents.iter_mut().zip(&per_doc).zip(&mut best) {
        let cosines: Vec<f32> = sentences
            .iter()
            .zip(rest.by_ref())
            .map(|(_, e)| q.dot(e))
            .collect();
        *best = cosines.iter().copied().fold(-1.0, f32::max);
        crate::answer::annotate(d, question, sentences, &cosines);
    }
    Ok(best)
}

#[async_trait]
impl Reranker for RagReranker {
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("rerank", StageKind::Rerank)
            .model(self.name.to_string())
            .provider("candle")
    }

    async fn rerank(
        &self,
        query: &Query,
        documents: Vec<ScoredDocument>,
        ctx: &RequestContext,
    ) -> Result<Vec<ScoredDocument>, StageError> {
        if documents.is_empty() {
            return Ok(documents);
        }
        if query.text.trim().is_empty() {
            return Err(StageError::invalid_input("the query is empty"));
        }
        match self.kind {
            RerankerKind::None => Ok(documents),
            RerankerKind::BiEncoder => {
                BiEncoderReranker::new(self.embedder.clone(), self.name.clone())
                    .rerank(query, documents, ctx)
                    .await
            }
            RerankerKind::MaxSim | RerankerKind::MaxSimFused => {
                let mut documents = documents;
                let scores =
                    score_sentences(&self.embedder, &query.text, &mut documents, ctx).await?;
                Ok(reorder(
                    documents,
                    &scores,
                    self.kind == RerankerKind::MaxSimFused,
                ))
            }
        }
    }
}

/// Sort by `scores` (input order breaks ties), or by the reciprocal-rank
/// fusion of the input order and the `scores` order when `fuse`.
pub fn reorder(documents: Vec<ScoredDocument>, scores: &[f32], fuse: bool) -> Vec<ScoredDocument> {
    let n = documents.len();
    let mut by_score: Vec<usize> = (0..n).collect();
    by_score.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut final_score = vec![0.0f32; n];
    for (rank, &i) in by_score.iter().enumerate() {
        final_score[i] = if fuse {
            1.0 / (RRF_K + rank as f32 + 1.0) + 1.0 / (RRF_K + i as f32 + 1.0)
        } else {
            scores[i]
        };
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| final_score[b].total_cmp(&final_score[a]).then(a.cmp(&b)));
    let mut slots: Vec<Option<ScoredDocument>> = documents.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| {
            slots[i].take().map(|mut d| {
                d.score = final_score[i];
                d
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use spanline::core::Document;

    fn docs(n: usize) -> Vec<ScoredDocument> {
        (0..n)
            .map(|i| ScoredDocument::new(Document::new(format!("d{i}"), "t"), 0.0))
            .collect()
    }

    fn ids(d: &[ScoredDocument]) -> Vec<&str> {
        d.iter().map(|d| d.document.id.as_str()).collect()
    }

    #[test]
    fn maxsim_orders_by_score_and_fusion_keeps_the_fused_order_in_play() {
        let scores = [0.1, 0.9, 0.5, 0.2];
        assert_eq!(
            ids(&reorder(docs(4), &scores, false)),
            ["d1", "d2", "d3", "d0"]
        );
        // Fused: d0 (fused 1st, score 4th) and d1 (fused 2nd, score 1st).
        let fused = reorder(docs(4), &scores, true);
        assert_eq!(ids(&fused), ["d1", "d0", "d2", "d3"]);
        assert!(fused.windows(2).all(|w| w[0].score >= w[1].score));
    }

    #[test]
    fn kinds_parse() {
        assert_eq!("maxsim-fused".parse(), Ok(RerankerKind::MaxSimFused));
        assert!("cross".parse::<RerankerKind>().is_err());
    }

    #[test]
    fn code_only_chunks_still_have_a_sentence() {
        let d = Document::new("x", "```\nlet a = 1;\n```");
        assert_eq!(scoring_sentences(&d).len(), 1);
        assert!(scoring_sentences(&Document::new("y", "  ")).is_empty());
    }
}
