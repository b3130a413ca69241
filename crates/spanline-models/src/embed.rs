//! Sentence embeddings with a BERT-family encoder (all-MiniLM-L6-v2 and
//! its relatives): masked mean pooling, L2 normalisation, batched.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{D, DType};
use opentelemetry::KeyValue;
use spanline_core::semconv::{gen_ai, spanline};
use spanline_core::{Embedder, Embedding, RequestContext, StageDescriptor, StageError, StageKind};

use crate::bert::{BertParts, check_finite, read_json};
use crate::error::ModelError;
use crate::resolve::{ALL_MINILM_L6_V2, ModelResolver};
use crate::threads::InferenceThreads;

/// The provider name on spans of in-process candle models.
pub(crate) const PROVIDER: &str = "candle";

/// Texts per forward pass (larger inputs are split).
const DEFAULT_MAX_BATCH: usize = 32;

/// A sentence embedder: BERT encoder, masked mean pooling over real tokens,
/// L2-normalised, so the dot product of two embeddings is their cosine.
///
/// Texts longer than the model's limit (`max_seq_length` from
/// `sentence_bert_config.json`, 256 for MiniLM; else the position limit)
/// are truncated; the stage span records how many in
/// `spanline.input.truncated`. Empty or blank texts are rejected: their
/// embedding would be meaningless.
#[derive(Clone)]
pub struct BertEmbedder {
    inner: Arc<BertParts>,
    name: Arc<str>,
    threads: InferenceThreads,
    max_batch: usize,
}

impl std::fmt::Debug for BertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedder")
            .field("model", &self.name)
            .field("dimensions", &self.dimensions())
            .field("max_tokens", &self.inner.max_tokens)
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

impl BertEmbedder {
    /// all-MiniLM-L6-v2, found (or fetched) by `resolver`, on the shared
    /// inference threads.
    pub fn minilm(resolver: &ModelResolver) -> Result<Self, ModelError> {
        let model = resolver.resolve(&ALL_MINILM_L6_V2)?;
        Self::load(
            &model.dir,
            ALL_MINILM_L6_V2.name,
            InferenceThreads::shared()?,
        )
    }

    /// Load a sentence-transformers BERT model from `dir` (`config.json`,
    /// `tokenizer.json`, `model.safetensors`, optionally
    /// `sentence_bert_config.json`), reporting it as `name` on spans.
    pub fn load(
        dir: &Path,
        name: impl Into<Arc<str>>,
        threads: InferenceThreads,
    ) -> Result<Self, ModelError> {
        let st_config = dir.join("sentence_bert_config.json");
        let max_tokens = if st_config.exists() {
            read_json::<SentenceBertConfig>(&st_config)?.max_seq_length
        } else {
            None
        };
        Ok(BertEmbedder {
            inner: Arc::new(BertParts::load(dir, max_tokens)?),
            name: name.into(),
            threads,
            max_batch: DEFAULT_MAX_BATCH,
        })
    }

    /// Texts per forward pass (at least one).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// Run on `threads` instead.
    pub fn threads(mut self, threads: InferenceThreads) -> Self {
        self.threads = threads;
        self
    }

    /// The threads this embedder computes on.
    pub fn inference_threads(&self) -> &InferenceThreads {
        &self.threads
    }

    /// The embedding dimension.
    pub fn dimensions(&self) -> usize {
        self.inner.config.hidden_size
    }

    /// The model's token limit per text.
    pub fn max_tokens(&self) -> usize {
        self.inner.max_tokens
    }

    /// Embed synchronously, on the calling thread and the current rayon
    /// pool (for indexing jobs and benchmarks; wrap in
    /// [`InferenceThreads::install`] to pick the threads). Stages go through
    /// [`Embedder::embed`], which runs on the embedder's inference threads.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<EmbedOutput, ModelError> {
        embed_all(&self.inner, texts, self.max_batch)
    }
}

/// Embeddings with what the model saw.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedOutput {
    /// One unit vector per text, in order.
    pub embeddings: Vec<Embedding>,
    /// Texts cut to the model's limit.
    pub truncated: usize,
    /// Tokens the model read (without padding).
    pub tokens: usize,
}

fn embed_all(
    parts: &BertParts,
    texts: &[String],
    max_batch: usize,
) -> Result<EmbedOutput, ModelError> {
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(ModelError::InvalidInput(format!(
            "text {i} is empty; there is nothing to embed"
        )));
    }
    let mut out = EmbedOutput {
        embeddings: Vec::with_capacity(texts.len()),
        truncated: 0,
        tokens: 0,
    };
    for chunk in texts.chunks(max_batch) {
        let batch = parts.batch(chunk.iter().map(String::as_str).collect())?;
        let hidden = parts.forward(&batch)?;
        // Masked mean pooling: padding contributes nothing.
        let mask = batch.mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1f32, f32::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        let unit = mean.broadcast_div(&norms)?;
        for row in unit.to_vec2::<f32>()? {
            check_finite(&row, "embedding values")?;
            out.embeddings.push(Embedding(row));
        }
        out.truncated += batch.truncated;
        out.tokens += batch.tokens;
    }
    Ok(out)
}

#[async_trait]
impl Embedder for BertEmbedder {
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("embed", StageKind::Embed)
            .model(self.name.to_string())
            .provider(PROVIDER)
    }

    async fn embed(
        &self,
        texts: &[String],
        ctx: &RequestContext,
    ) -> Result<Vec<Embedding>, StageError> {
        let (parts, max_batch) = (self.inner.clone(), self.max_batch);
        let texts = texts.to_vec();
        let out = self
            .threads
            .run(ctx, move |_| embed_all(&parts, &texts, max_batch))
            .await??;
        ctx.set_attribute(KeyValue::new(gen_ai::USAGE_INPUT_TOKENS, out.tokens as i64));
        if out.truncated > 0 {
            ctx.set_attribute(KeyValue::new(spanline::INPUT_TRUNCATED, true));
        }
        Ok(out.embeddings)
    }
}
