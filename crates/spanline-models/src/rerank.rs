//! Rerankers: a BERT cross-encoder (ms-marco-MiniLM family) when such
//! weights are given, and a bi-encoder over a sentence embedder otherwise.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{D, IndexOp, Module};
use candle_nn::Linear;
use opentelemetry::KeyValue;
use spanline_core::semconv::{gen_ai, spanline};
use spanline_core::{
    Query, RequestContext, Reranker, ScoredDocument, StageDescriptor, StageError, StageKind,
};

use crate::bert::{BertParts, check_finite, read_json};
use crate::embed::{BertEmbedder, PROVIDER};
use crate::error::ModelError;
use crate::threads::InferenceThreads;

/// Pairs per forward pass.
const PAIRS_PER_BATCH: usize = 16;

/// A cross-encoder: BERT reads query and passage together
/// (`[CLS] query [SEP] passage [SEP]`), the pooler (dense + tanh on `[CLS]`)
/// and a classifier give one relevance logit per pair. Loads Hugging Face
/// `BertForSequenceClassification` checkpoints (`bert.*`, `bert.pooler.*`,
/// `classifier.*`) such as `cross-encoder/ms-marco-MiniLM-L-6-v2`. With two
/// labels the score is the logit margin of label 1 ("relevant").
#[derive(Clone)]
pub struct CrossEncoderReranker {
    inner: Arc<CrossEncoder>,
    name: Arc<str>,
    threads: InferenceThreads,
}

struct CrossEncoder {
    bert: BertParts,
    pooler: Linear,
    classifier: Linear,
    labels: usize,
}

impl std::fmt::Debug for CrossEncoderReranker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrossEncoderReranker")
            .field("model", &self.name)
            .field("labels", &self.inner.labels)
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct Labels {
    #[serde(default)]
    id2label: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    num_labels: Option<usize>,
}

impl CrossEncoderReranker {
    /// Load a cross-encoder from `dir` (`config.json`, `tokenizer.json`,
    /// `model.safetensors`), reporting it as `name` on spans.
    pub fn load(
        dir: &Path,
        name: impl Into<Arc<str>>,
        threads: InferenceThreads,
    ) -> Result<Self, ModelError> {
        let config_path = dir.join("config.json");
        let labels: Labels = read_json(&config_path)?;
        let labels = labels
            .num_labels
            .or(labels.id2label.map(|m| m.len()))
            .unwrap_or(1);
        if !(1..=2).contains(&labels) {
            return Err(ModelError::corrupt(
                &config_path,
                format!("a reranker has one or two labels, not {labels}"),
            ));
        }
        let bert = BertParts::load(dir, None)?;
        let hidden = bert.config.hidden_size;
        let weights = dir.join("model.safetensors");
        let vb = &bert.weights;
        let head = |prefix: &str, out: usize| {
            candle_nn::linear(hidden, out, vb.pp(prefix))
                .map_err(|e| ModelError::corrupt(&weights, format!("{prefix}: {e}")))
        };
        let pooler = head("bert.pooler.dense", hidden)?;
        let classifier = head("classifier", labels)?;
        Ok(CrossEncoderReranker {
            inner: Arc::new(CrossEncoder {
                bert,
                pooler,
                classifier,
                labels,
            }),
            name: name.into(),
            threads,
        })
    }

    /// Score (query, passage) pairs on the calling thread.
    pub fn score_blocking(&self, query: &str, passages: &[&str]) -> Result<Scores, ModelError> {
        self.inner.score(query, passages)
    }
}

/// Relevance scores with what the model saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// One score per passage, in order; higher is more relevant.
    pub scores: Vec<f32>,
    /// Pairs cut to the model's limit.
    pub truncated: usize,
    /// Tokens the model read.
    pub tokens: usize,
}

impl CrossEncoder {
    fn score(&self, query: &str, passages: &[&str]) -> Result<Scores, ModelError> {
        let mut out = Scores {
            scores: Vec::with_capacity(passages.len()),
            truncated: 0,
            tokens: 0,
        };
        for chunk in passages.chunks(PAIRS_PER_BATCH) {
            let pairs: Vec<(&str, &str)> = chunk.iter().map(|p| (query, *p)).collect();
            let batch = self.bert.batch(pairs)?;
            let hidden = self.bert.forward(&batch)?;
            let cls = hidden.i((.., 0))?;
            let pooled = self.pooler.forward(&cls)?.tanh()?;
            let logits = self.classifier.forward(&pooled)?;
            let scores = if self.labels == 1 {
                logits.squeeze(D::Minus1)?
            } else {
                (logits.i((.., 1))? - logits.i((.., 0))?)?
            };
            let scores = scores.to_vec1::<f32>()?;
            check_finite(&scores, "relevance scores")?;
            out.scores.extend(scores);
            out.truncated += batch.truncated;
            out.tokens += batch.tokens;
        }
        Ok(out)
    }
}

/// Reorder by score, best first; ties keep their incoming order.
fn reorder(documents: Vec<ScoredDocument>, scores: &[f32]) -> Vec<ScoredDocument> {
    let mut scored: Vec<ScoredDocument> = documents
        .into_iter()
        .zip(scores)
        .map(|(d, &score)| ScoredDocument { score, ..d })
        .collect();
    scored.sort_by(|a, b| b.score.total_cmp(&a.score));
    scored
}

/// What both rerankers do around their scoring: score `documents` against
/// `query` on `threads` (the context carried in), record token usage and
/// truncation on the stage span, and reorder.
async fn score_and_reorder<F>(
    threads: &InferenceThreads,
    ctx: &RequestContext,
    query: &Query,
    documents: Vec<ScoredDocument>,
    score: F,
) -> Result<Vec<ScoredDocument>, StageError>
where
    F: FnOnce(&str, &[&str]) -> Result<Scores, ModelError> + Send + 'static,
{
    if documents.is_empty() {
        return Ok(documents);
    }
    let query = query.text.clone();
    let passages: Vec<Arc<spanline_core::Document>> =
        documents.iter().map(|d| d.document.clone()).collect();
    let scores = threads
        .run(ctx, move |_| {
            let texts: Vec<&str> = passages.iter().map(|d| d.text.as_str()).collect();
            score(&query, &texts)
        })
        .await??;
    ctx.set_attribute(KeyValue::new(
        gen_ai::USAGE_INPUT_TOKENS,
        scores.tokens as i64,
    ));
    if scores.truncated > 0 {
        ctx.set_attribute(KeyValue::new(spanline::INPUT_TRUNCATED, true));
    }
    Ok(reorder(documents, &scores.scores))
}

#[async_trait]
impl Reranker for CrossEncoderReranker {
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("rerank", StageKind::Rerank)
            .model(self.name.to_string())
            .provider(PROVIDER)
    }

    async fn rerank(
        &self,
        query: &Query,
        documents: Vec<ScoredDocument>,
        ctx: &RequestContext,
    ) -> Result<Vec<ScoredDocument>, StageError> {
        let inner = self.inner.clone();
        score_and_reorder(&self.threads, ctx, query, documents, move |q, passages| {
            inner.score(q, passages)
        })
        .await
    }
}

/// A bi-encoder reranker: cosine between the query's and each passage's
/// sentence embedding. What the bundled model files give (no cross-encoder
/// weights are packaged); weaker than a cross-encoder, but it reorders by
/// meaning rather than by keywords. Blank passages score −1.
#[derive(Debug, Clone)]
pub struct BiEncoderReranker {
    embedder: BertEmbedder,
    name: Arc<str>,
}

impl BiEncoderReranker {
    /// Rerank with `embedder`'s embeddings.
    pub fn new(embedder: BertEmbedder, name: impl Into<Arc<str>>) -> Self {
        BiEncoderReranker {
            embedder,
            name: name.into(),
        }
    }

    /// Score passages against `query` on the calling thread.
    pub fn score_blocking(&self, query: &str, passages: &[&str]) -> Result<Scores, ModelError> {
        let mut texts = vec![query.to_string()];
        let kept: Vec<usize> = (0..passages.len())
            .filter(|&i| !passages[i].trim().is_empty())
            .collect();
        texts.extend(kept.iter().map(|&i| passages[i].to_string()));
        let out = self.embedder.embed_blocking(&texts)?;
        let (q, rest) = out
            .embeddings
            .split_first()
            .ok_or_else(|| ModelError::Inference("no query embedding".into()))?;
        let mut scores = vec![-1.0; passages.len()];
        for (&i, e) in kept.iter().zip(rest) {
            scores[i] = q.dot(e);
        }
        Ok(Scores {
            scores,
            truncated: out.truncated,
            tokens: out.tokens,
        })
    }
}

#[async_trait]
impl Reranker for BiEncoderReranker {
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("rerank", StageKind::Rerank)
            .model(self.name.to_string())
            .provider(PROVIDER)
    }

    async fn rerank(
        &self,
        query: &Query,
        documents: Vec<ScoredDocument>,
        ctx: &RequestContext,
    ) -> Result<Vec<ScoredDocument>, StageError> {
        if !documents.is_empty() && query.text.trim().is_empty() {
            return Err(StageError::invalid_input("the query is empty"));
        }
        let this = self.clone();
        let threads = self.embedder.inference_threads().clone();
        score_and_reorder(&threads, ctx, query, documents, move |q, passages| {
            this.score_blocking(q, passages)
        })
        .await
    }
}
