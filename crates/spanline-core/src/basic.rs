//! Honest, model-free stages: they do real work without model weights.
//! Useful for tests, examples, and as real components (BM25 keyword
//! retrieval, rank fusion, prompt building) beside model-backed stages.
//!
//! - [`Normalizer`]: lowercases, strips control characters, collapses
//!   whitespace, tokenizes, bounds the length.
//! - [`HashingEmbedder`]: signed feature hashing of unigrams and bigrams,
//!   L2-normalised.
//! - [`VectorIndex`]: exact cosine retrieval over embedded documents.
//! - [`Bm25Index`]: Okapi BM25 keyword retrieval over an inverted index.
//! - [`KeywordReranker`]: reorders by query-term coverage.
//! - [`ReciprocalRankFusion`]: fuses two ranked lists.
//! - [`PromptBuilder`]: turns retrieved documents into a generation request.
//! - [`ExtractiveGenerator`]: answers with the context sentences that best
//!   cover the question, citing their documents, streamed word by word.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use opentelemetry::KeyValue;

use crate::adapters::{Embedder, Generator, Preprocessor, Reranker, Retriever, stream_pieces};
use crate::context::RequestContext;
use crate::error::StageError;
use crate::semconv::spanline;
use crate::stage::{Stage, StageDescriptor, StageKind};
use crate::types::{
    Document, EmbeddedQuery, Embedding, FinishReason, GenerationRequest, Message, Query, Retrieved,
    Role, SamplingParams, ScoredDocument, TokenStream, TokenUsage,
};

/// Lowercased alphanumeric words of `text`.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

const PROVIDER: &str = "spanline";

/// Normalises a query: strips control characters, collapses whitespace,
/// lowercases, tokenizes; truncates past `max_chars` (recorded on the span as
/// `spanline.input.truncated`); rejects an empty query.
#[derive(Debug, Clone)]
pub struct Normalizer {
    max_chars: usize,
}

impl Default for Normalizer {
    fn default() -> Self {
        Normalizer { max_chars: 4096 }
    }
}

impl Normalizer {
    /// Keep at most `max_chars` characters.
    pub fn max_chars(max_chars: usize) -> Self {
        Normalizer { max_chars }
    }
}

#[async_trait]
impl Preprocessor for Normalizer {
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("normalize", StageKind::Preprocess)
    }
    async fn preprocess(&self, query: Query, ctx: &RequestContext) -> Result<Query, StageError> {
        let mut text = String::with_capacity(query.text.len().min(self.max_chars * 4));
        let mut count = 0;
        let mut truncated = false;
        for word in query
            .text
            .split(|c: char| c.is_whitespace() || c.is_control())
        {
            if word.is_empty() {
                continue;
            }
            let n = word.chars().count();
            if count + n + usize::from(count > 0) > self.max_chars {
                truncated = true;
                break;
            }
            if count > 0 {
                text.push(' ');
                count += 1;
            }
            text.extend(word.chars().flat_map(char::to_lowercase));
            count += n;
        }
        if text.is_empty() {
            return Err(StageError::invalid_input(if truncated {
                "the query's first word is longer than the limit"
            } else {
                "the query is empty"
            }));
        }
        if truncated {
            ctx.set_attribute(KeyValue::new(spanline::INPUT_TRUNCATED, true));
        }
        let tokens = words(&text).collect();
        Ok(Query { text, tokens })
    }
}

/// Signed feature hashing of word unigrams and bigrams into `dim`
/// dimensions, L2-normalised: similar wording gives similar vectors.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dim: usize,
    model: String,
}

impl HashingEmbedder {
    /// An embedder producing `dim`-dimensional vectors (at least 1).
    pub fn new(dim: usize) -> Self {
        let dim = dim.max(1);
        HashingEmbedder {
            dim,
            model: format!("hashing-{dim}"),
        }
    }

    /// Embed one text (synchronously: the work is a few microseconds).
    pub fn embed_text(&self, text: &str) -> Embedding {
        let mut v = vec![0f32; self.dim];
        let mut prev: Option<String> = None;
        for w in words(text) {
            self.add(&mut v, w.as_bytes(), 1.0);
            if let Some(p) = prev.as_deref() {
                let bigram = [p.as_bytes(), b" ", w.as_bytes()].concat();
                self.add(&mut v, &bigram, 0.5);
            }
            prev = Some(w);
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        Embedding(v)
    }

    fn add(&self, v: &mut [f32], feature: &[u8], weight: f32) {
        let h = fnv1a(feature);
        let i = (h % self.dim as u64) as usize;
        v[i] += if h >> 63 == 0 { weight } else { -weight };
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[async_trait]
impl Embedder for HashingEmbedder {
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("hashing-embedder", StageKind::Embed)
            .model(self.model.clone())
            .provider(PROVIDER)
    }
    async fn embed(
        &self,
        texts: &[String],
        _: &RequestContext,
    ) -> Result<Vec<Embedding>, StageError> {
        Ok(texts.iter().map(|t| self.embed_text(t)).collect())
    }
}

/// Exact cosine retrieval over embedded documents.
#[derive(Debug, Clone)]
pub struct VectorIndex {
    name: String,
    documents: Vec<Arc<Document>>,
    embeddings: Vec<Embedding>,
}

impl VectorIndex {
    /// Index `documents`, embedding them with `embedder`.
    pub async fn build<E: Embedder + ?Sized>(
        embedder: &E,
        documents: Vec<Document>,
        ctx: &RequestContext,
    ) -> Result<Self, StageError> {
        let texts: Vec<String> = documents.iter().map(|d| d.text.clone()).collect();
        let embeddings = embedder.embed(&texts, ctx).await?;
        Self::from_embeddings(documents, embeddings)
    }

    /// Index documents whose embeddings are already known.
    pub fn from_embeddings(
        documents: Vec<Document>,
        embeddings: Vec<Embedding>,
    ) -> Result<Self, StageError> {
        if documents.len() != embeddings.len() {
            return Err(StageError::invalid_input(format!(
                "{} documents but {} embeddings",
                documents.len(),
                embeddings.len()
            )));
        }
        if let Some(first) = embeddings.first()
            && embeddings
                .iter()
                .any(|e| e.dim() != first.dim() || !e.is_finite())
        {
            return Err(StageError::invalid_input(
                "embeddings differ in dimension or hold non-finite values",
            ));
        }
        Ok(VectorIndex {
            name: "vector-index".into(),
            documents: documents.into_iter().map(Arc::new).collect(),
            embeddings,
        })
    }

    /// Name the index (its `gen_ai.data_source.id`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.documents.len()
    }

    /// Whether it holds no documents.
    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    /// The `top_k` documents most similar to `embedding`.
    pub fn search(&self, embedding: &Embedding, top_k: usize) -> Vec<ScoredDocument> {
        let scored = self
            .embeddings
            .iter()
            .enumerate()
            .map(|(i, e)| (i, e.dot(embedding)));
        top_k_by_score(scored, top_k)
            .into_iter()
            .map(|(i, s)| ScoredDocument::new(self.documents[i].clone(), s))
            .collect()
    }
}

/// The `k` highest-scoring `(index, score)` pairs, best first; ties keep
/// index order.
fn top_k_by_score(scored: impl Iterator<Item = (usize, f32)>, k: usize) -> Vec<(usize, f32)> {
    let mut all: Vec<(usize, f32)> = scored.collect();
    let cmp = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if k < all.len() {
        if k == 0 {
            return Vec::new();
        }
        all.select_nth_unstable_by(k - 1, cmp);
        all.truncate(k);
    }
    all.sort_unstable_by(cmp);
    all
}

#[async_trait]
impl Retriever for VectorIndex {
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("dense-retrieval", StageKind::Retrieve).data_source(self.name.clone())
    }
    async fn retrieve(
        &self,
        query: &EmbeddedQuery,
        top_k: usize,
        _: &RequestContext,
    ) -> Result<Vec<ScoredDocument>, StageError> {
        if !self.embeddings.is_empty() && query.embedding.dim() != self.embeddings[0].dim() {
            return Err(StageError::invalid_input(format!(
                "query embedding has {} dimensions, the index {}",
                query.embedding.dim(),
                self.embeddings[0].dim()
            )));
        }
        Ok(self.search(&query.embedding, top_k))
    }
}

/// Okapi BM25 keyword retrieval (k1 = 1.2, b = 0.75) over an inverted index.
#[derive(Debug, Clone)]
pub struct Bm25Index {
    name: String,
    documents: Vec<Arc<Document>>,
    lengths: Vec<f32>,
    avg_len: f32,
    postings: HashMap<String, Vec<(usize, f32)>>,
}

impl Bm25Index {
    /// Index `documents`.
    pub fn new(documents: Vec<Document>) -> Self {
        let mut postings: HashMap<String, Vec<(usize, f32)>> = HashMap::new();
        let mut lengths = Vec::with_capacity(documents.len());
        for (i, d) in documents.iter().enumerate() {
            let mut tf: HashMap<String, f32> = HashMap::new();
            let mut len = 0usize;
            for w in words(&d.text) {
                *tf.entry(w).or_default() += 1.0;
                len += 1;
            }
            lengths.push(len as f32);
            for (term, f) in tf {
                postings.entry(term).or_default().push((i, f));
            }
        }
        let avg_len = if lengths.is_empty() {
            0.0
        } else {
            lengths.iter().sum::<f32>() / lengths.len() as f32
        };
        Bm25Index {
            name: "bm25-index".into(),
            documents: documents.into_iter().map(Arc::new).collect(),
            lengths,
            avg_len,
            postings,
        }
    }

    /// Name the index (its `gen_ai.data_source.id`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The `top_k` documents for `text`.
    pub fn search(&self, text: &str, top_k: usize) -> Vec<ScoredDocument> {
        const K1: f32 = 1.2;
        const B: f32 = 0.75;
        let n = self.documents.len() as f32;
        let mut scores: HashMap<usize, f32> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for term in words(text) {
            if !seen.insert(term.clone()) {
                continue;
            }
            let Some(list) = self.postings.get(&term) else {
                continue;
            };
            let df = list.len() as f32;
            let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
            for &(doc, tf) in list {
                let norm = 1.0 - B + B * self.lengths[doc] / self.avg_len.max(1.0);
                *scores.entry(doc).or_default() += idf * tf * (K1 + 1.0) / (tf + K1 * norm);
            }
        }
        top_k_by_score(scores.into_iter(), top_k)
            .into_iter()
            .map(|(i, s)| ScoredDocument::new(self.documents[i].clone(), s))
            .collect()
    }
}

#[async_trait]
impl Retriever for Bm25Index {
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("keyword-retrieval", StageKind::Retrieve)
            .data_source(self.name.clone())
    }
    async fn retrieve(
        &self,
        query: &EmbeddedQuery,
        top_k: usize,
        _: &RequestContext,
    ) -> Result<Vec<ScoredDocument>, StageError> {
        Ok(self.search(&query.query.text, top_k))
    }
}

/// Reorders documents by the share of distinct query words they contain;
/// the previous score breaks ties.
#[derive(Debug, Clone, Default)]
pub struct KeywordReranker;

#[async_trait]
impl Reranker for KeywordReranker {
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("keyword-rerank", StageKind::Rerank)
    }
    async fn rerank(
        &self,
        query: &Query,
        mut documents: Vec<ScoredDocument>,
        _: &RequestContext,
    ) -> Result<Vec<ScoredDocument>, StageError> {
        let terms: std::collections::HashSet<String> = words(&query.text).collect();
        if terms.is_empty() {
            return Ok(documents);
        }
        for d in &mut documents {
            let doc_words: std::collections::HashSet<String> = words(&d.document.text).collect();
            let covered = terms.iter().filter(|t| doc_words.contains(*t)).count();
            let prior = if d.score.is_finite() {
                d.score.tanh()
            } else {
                0.0
            };
            d.score = covered as f32 / terms.len() as f32 + 1e-3 * prior;
        }
        documents.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(documents)
    }
}

/// Reciprocal rank fusion of two ranked lists: score = Σ 1 / (k + rank),
/// k = 60; a document found by both ranks higher. Keeps the best `top_k`.
#[derive(Debug, Clone)]
pub struct ReciprocalRankFusion {
    top_k: usize,
}

impl ReciprocalRankFusion {
    /// Keep the best `top_k` after fusion.
    pub fn new(top_k: usize) -> Self {
        ReciprocalRankFusion { top_k }
    }

    /// Fuse ranked lists.
    pub fn fuse(&self, lists: &[&[ScoredDocument]]) -> Vec<ScoredDocument> {
        const K: f32 = 60.0;
        let mut order: Vec<Arc<Document>> = Vec::new();
        let mut scores: HashMap<&str, (usize, f32)> = HashMap::new();
        for list in lists {
            for (rank, d) in list.iter().enumerate() {
                let entry = scores.entry(d.document.id.as_str()).or_insert_with(|| {
                    order.push(d.document.clone());
                    (order.len() - 1, 0.0)
                });
                entry.1 += 1.0 / (K + rank as f32 + 1.0);
            }
        }
        top_k_by_score(scores.into_values(), self.top_k)
            .into_iter()
            .map(|(i, s)| ScoredDocument::new(order[i].clone(), s))
            .collect()
    }
}

#[async_trait]
impl Stage for ReciprocalRankFusion {
    type Input = (Retrieved, Retrieved);
    type Output = Retrieved;
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("rank-fusion", StageKind::Custom)
    }
    async fn run(
        &self,
        (a, b): (Retrieved, Retrieved),
        _: &RequestContext,
    ) -> Result<Retrieved, StageError> {
        let documents = self.fuse(&[&a.documents, &b.documents]);
        Ok(Retrieved {
            query: a.query,
            documents,
        })
    }
}

/// Builds a generation request: system instructions with the numbered
/// context documents, then the question.
#[derive(Debug, Clone)]
pub struct PromptBuilder {
    instructions: String,
    params: SamplingParams,
}

impl Default for PromptBuilder {
    fn default() -> Self {
        PromptBuilder {
            instructions: "Answer the question using only the context. Cite sources as [id]."
                .into(),
            params: SamplingParams::default(),
        }
    }
}

impl PromptBuilder {
    /// Use `instructions` as the system message's first line.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = instructions.into();
        self
    }
    /// Use `params` for sampling.
    pub fn params(mut self, params: SamplingParams) -> Self {
        self.params = params;
        self
    }
}

#[async_trait]
impl Stage for PromptBuilder {
    type Input = Retrieved;
    type Output = GenerationRequest;
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("prompt", StageKind::Custom)
    }
    async fn run(
        &self,
        input: Retrieved,
        _: &RequestContext,
    ) -> Result<GenerationRequest, StageError> {
        let mut system = self.instructions.clone();
        system.push_str("\n\nContext:\n");
        for d in &input.documents {
            system.push_str(&format!("[{}] {}\n", d.document.id, d.document.text));
        }
        Ok(GenerationRequest {
            messages: vec![
                Message::new(Role::System, system),
                Message::new(Role::User, input.query.text),
            ],
            params: self.params.clone(),
            context: input.documents,
        })
    }
}

/// Answers with the context sentences that cover the most question words,
/// each followed by its citation `[document id]`, streamed word by word.
/// Honours `max_tokens` (in words) and stop sequences.
#[derive(Debug, Clone)]
pub struct ExtractiveGenerator {
    sentences: usize,
}

impl Default for ExtractiveGenerator {
    fn default() -> Self {
        ExtractiveGenerator { sentences: 2 }
    }
}

impl ExtractiveGenerator {
    /// Answer with at most `n` sentences.
    pub fn sentences(n: usize) -> Self {
        ExtractiveGenerator {
            sentences: n.max(1),
        }
    }
}

#[async_trait]
impl Generator for ExtractiveGenerator {
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("extractive-generator", StageKind::Generate)
            .model("extractive")
            .provider(PROVIDER)
    }
    async fn generate_stream(
        &self,
        request: GenerationRequest,
        _: &RequestContext,
    ) -> Result<TokenStream, StageError> {
        let question = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .ok_or_else(|| StageError::invalid_input("no user message"))?;
        let terms: std::collections::HashSet<String> = words(&question.content).collect();
        let mut candidates: Vec<(usize, f32, String, &str)> = Vec::new();
        for d in &request.context {
            for sentence in d.document.text.split_inclusive(['.', '!', '?', '\n']) {
                let s = sentence.trim();
                if s.is_empty() {
                    continue;
                }
                let covered = words(s).filter(|w| terms.contains(w)).count();
                if covered > 0 {
                    candidates.push((
                        candidates.len(),
                        covered as f32,
                        s.to_owned(),
                        &d.document.id,
                    ));
                }
            }
        }
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut answer = String::new();
        for (_, _, s, id) in candidates.iter().take(self.sentences) {
            if !answer.is_empty() {
                answer.push(' ');
            }
            answer.push_str(&format!("{s} [{id}]"));
        }
        if answer.is_empty() {
            answer.push_str("The context does not answer this question.");
        }
        let input_tokens: u64 = request
            .messages
            .iter()
            .map(|m| words(&m.content).count() as u64)
            .sum();
        let max = request.params.max_tokens as usize;
        let mut pieces: Vec<String> = Vec::new();
        let mut produced = String::new();
        let mut finish = FinishReason::Stop;
        for (i, w) in answer.split(' ').enumerate() {
            if i == max {
                finish = FinishReason::Length;
                break;
            }
            let piece = if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            };
            produced.push_str(&piece);
            if let Some(stop) = request
                .params
                .stop
                .iter()
                .find(|s| !s.is_empty() && produced.contains(s.as_str()))
            {
                let cut = produced.find(stop.as_str()).unwrap_or(produced.len());
                let already: usize = pieces.iter().map(String::len).sum();
                if cut > already {
                    pieces.push(produced[already..cut].to_owned());
                }
                finish = FinishReason::StopSequence;
                break;
            }
            pieces.push(piece);
        }
        let usage = TokenUsage {
            input_tokens,
            output_tokens: pieces.len() as u64,
        };
        Ok(stream_pieces(pieces, usage, finish))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RequestContext {
        RequestContext::new()
    }

    #[tokio::test]
    async fn normalizer_cleans_tokenizes_and_bounds() {
        let n = Normalizer::max_chars(12);
        let q = n
            .preprocess(Query::new("  Hello\tWORLD\u{7}  again "), &ctx())
            .await
            .unwrap();
        assert_eq!(q.text, "hello world");
        assert_eq!(q.tokens, vec!["hello", "world"]);
        let err = n
            .preprocess(Query::new(" \n\t "), &ctx())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
    }

    #[test]
    fn hashing_embeddings_are_unit_and_similar_for_similar_text() {
        let e = HashingEmbedder::new(512);
        let a = e.embed_text("kafka headers carry the trace context");
        let b = e.embed_text("the trace context is carried in kafka headers");
        let c = e.embed_text("bananas are yellow fruit");
        assert!((a.dot(&a) - 1.0).abs() < 1e-5);
        assert!(a.dot(&b) > 0.5, "{}", a.dot(&b));
        assert!(a.dot(&c).abs() < 0.2, "{}", a.dot(&c));
        assert_eq!(e.embed_text("").0.iter().filter(|x| **x != 0.0).count(), 0);
    }

    fn corpus() -> Vec<Document> {
        vec![
            Document::new("kafka", "Kafka headers carry traceparent. Queues add wait."),
            Document::new(
                "grpc",
                "gRPC metadata carries traceparent between services.",
            ),
            Document::new("fruit", "Bananas are yellow. Apples are red."),
        ]
    }

    #[tokio::test]
    async fn vector_and_bm25_retrieval_rank_the_relevant_document_first() {
        let e = HashingEmbedder::new(256);
        let index = VectorIndex::build(&e, corpus(), &ctx()).await.unwrap();
        let q = EmbeddedQuery {
            query: Query::new("kafka headers"),
            embedding: e.embed_text("kafka headers"),
        };
        let dense = index.retrieve(&q, 2, &ctx()).await.unwrap();
        assert_eq!(dense[0].document.id, "kafka");
        assert_eq!(dense.len(), 2);
        let bm25 = Bm25Index::new(corpus());
        let kw = bm25.retrieve(&q, 5, &ctx()).await.unwrap();
        assert_eq!(kw.len(), 1, "only one document mentions kafka or headers");
        assert_eq!(kw[0].document.id, "kafka");
        assert!(bm25.search("", 3).is_empty());
    }

    #[test]
    fn rank_fusion_rewards_agreement() {
        let docs: Vec<Arc<Document>> = corpus().into_iter().map(Arc::new).collect();
        let a = vec![
            ScoredDocument::new(docs[0].clone(), 0.9),
            ScoredDocument::new(docs[1].clone(), 0.5),
        ];
        let b = vec![
            ScoredDocument::new(docs[1].clone(), 3.0),
            ScoredDocument::new(docs[2].clone(), 1.0),
        ];
        let fused = ReciprocalRankFusion::new(10).fuse(&[&a, &b]);
        assert_eq!(fused[0].document.id, "grpc", "found by both lists");
        assert_eq!(fused.len(), 3);
        assert_eq!(ReciprocalRankFusion::new(1).fuse(&[&a, &b]).len(), 1);
    }

    #[tokio::test]
    async fn extractive_generator_cites_and_honours_limits() {
        let docs: Vec<ScoredDocument> = corpus()
            .into_iter()
            .map(|d| ScoredDocument::new(d, 1.0))
            .collect();
        let mut request = GenerationRequest::user("What carries traceparent in Kafka?");
        request.context = docs;
        let g = crate::Generate::new(ExtractiveGenerator::default());
        let out = g.run(request.clone(), &ctx()).await.unwrap();
        assert!(
            out.text
                .starts_with("Kafka headers carry traceparent. [kafka]"),
            "{}",
            out.text
        );
        assert_eq!(out.finish_reason, FinishReason::Stop);
        assert_eq!(
            out.usage.output_tokens as usize,
            out.text.split(' ').count()
        );
        assert!(out.timings.time_to_first_token.is_some());

        request.params.max_tokens = 3;
        let short = g.run(request.clone(), &ctx()).await.unwrap();
        assert_eq!(short.text, "Kafka headers carry");
        assert_eq!(short.finish_reason, FinishReason::Length);

        request.params.max_tokens = 100;
        request.params.stop = vec!["traceparent".into()];
        let stopped = g.run(request, &ctx()).await.unwrap();
        assert_eq!(stopped.text, "Kafka headers carry ");
        assert_eq!(stopped.finish_reason, FinishReason::StopSequence);
    }
}
