//! The specialised stage traits (preprocess, embed, retrieve, rerank,
//! generate) and the adapters that make each a [`Stage`] with typed input
//! and output, describing inputs and outputs on the span per the GenAI
//! conventions.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures_util::StreamExt;
use metrics::Histogram;
use opentelemetry::{KeyValue, StringValue, Value};

use crate::context::RequestContext;
use crate::error::StageError;
use crate::semconv::{gen_ai, metric, spanline};
use crate::stage::{Annotations, Stage, StageDescriptor};
use crate::types::{
    EmbeddedQuery, Embedding, FinishReason, Generation, GenerationRequest, GenerationTimings,
    Query, Retrieved, ScoredDocument, Token, TokenStream, TokenUsage,
};

/// Normalises or enriches a query.
#[async_trait]
pub trait Preprocessor: Send + Sync {
    /// Who it is.
    fn describe(&self) -> StageDescriptor;
    /// Preprocess one query.
    async fn preprocess(&self, query: Query, ctx: &RequestContext) -> Result<Query, StageError>;
}

/// Turns texts into vectors.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// Who it is.
    fn describe(&self) -> StageDescriptor;
    /// Embed a batch of texts; one embedding per text, in order.
    async fn embed(
        &self,
        texts: &[String],
        ctx: &RequestContext,
    ) -> Result<Vec<Embedding>, StageError>;
}

/// Finds documents for a query.
#[async_trait]
pub trait Retriever: Send + Sync {
    /// Who it is.
    fn describe(&self) -> StageDescriptor;
    /// The `top_k` best documents, best first.
    async fn retrieve(
        &self,
        query: &EmbeddedQuery,
        top_k: usize,
        ctx: &RequestContext,
    ) -> Result<Vec<ScoredDocument>, StageError>;
}

/// Reorders documents by relevance to a query.
#[async_trait]
pub trait Reranker: Send + Sync {
    /// Who it is.
    fn describe(&self) -> StageDescriptor;
    /// Rescore and reorder, best first.
    async fn rerank(
        &self,
        query: &Query,
        documents: Vec<ScoredDocument>,
        ctx: &RequestContext,
    ) -> Result<Vec<ScoredDocument>, StageError>;
}

/// Produces text, streamed.
#[async_trait]
pub trait Generator: Send + Sync {
    /// Who it is.
    fn describe(&self) -> StageDescriptor;
    /// Start generating; the stream ends with [`Token::Done`].
    async fn generate_stream(
        &self,
        request: GenerationRequest,
        ctx: &RequestContext,
    ) -> Result<TokenStream, StageError>;
}

macro_rules! forward_trait {
    ($Trait:ident { $(fn $m:ident(&self $(, $a:ident: $t:ty)*) -> $r:ty;)* }) => {
        #[async_trait]
        impl<T: $Trait + ?Sized> $Trait for Arc<T> {
            fn describe(&self) -> StageDescriptor {
                (**self).describe()
            }
            $(async fn $m(&self $(, $a: $t)*) -> $r {
                (**self).$m($($a),*).await
            })*
        }
    };
}
forward_trait!(Preprocessor { fn preprocess(&self, query: Query, ctx: &RequestContext) -> Result<Query, StageError>; });
forward_trait!(Embedder { fn embed(&self, texts: &[String], ctx: &RequestContext) -> Result<Vec<Embedding>, StageError>; });
forward_trait!(Retriever { fn retrieve(&self, query: &EmbeddedQuery, top_k: usize, ctx: &RequestContext) -> Result<Vec<ScoredDocument>, StageError>; });
forward_trait!(Reranker { fn rerank(&self, query: &Query, documents: Vec<ScoredDocument>, ctx: &RequestContext) -> Result<Vec<ScoredDocument>, StageError>; });
forward_trait!(Generator { fn generate_stream(&self, request: GenerationRequest, ctx: &RequestContext) -> Result<TokenStream, StageError>; });

/// [`Preprocessor`] as a stage: `Query → Query`.
#[derive(Debug, Clone)]
pub struct Preprocess<P>(pub P);

#[async_trait]
impl<P: Preprocessor> Stage for Preprocess<P> {
    type Input = Query;
    type Output = Query;
    fn describe(&self) -> StageDescriptor {
        self.0.describe()
    }
    async fn run(&self, input: Query, ctx: &RequestContext) -> Result<Query, StageError> {
        self.0.preprocess(input, ctx).await
    }
    fn annotate_input(&self, input: &Query, a: &mut Annotations<'_>) {
        a.content(gen_ai::RETRIEVAL_QUERY_TEXT, || input.text.clone());
    }
    fn annotate_output(&self, output: &Query, a: &mut Annotations<'_>) {
        a.attribute(KeyValue::new(
            spanline::OUTPUT_COUNT,
            output.tokens.len() as i64,
        ));
    }
}

/// [`Embedder`] as a stage over a query: `Query → EmbeddedQuery`. Rejects
/// non-finite vectors.
#[derive(Debug, Clone)]
pub struct Embed<E>(pub E);

#[async_trait]
impl<E: Embedder> Stage for Embed<E> {
    type Input = Query;
    type Output = EmbeddedQuery;
    fn describe(&self) -> StageDescriptor {
        self.0.describe()
    }
    async fn run(&self, query: Query, ctx: &RequestContext) -> Result<EmbeddedQuery, StageError> {
        let mut vectors = self.0.embed(std::slice::from_ref(&query.text), ctx).await?;
        let embedding = match (vectors.pop(), vectors.is_empty()) {
            (Some(e), true) => e,
            _ => {
                return Err(StageError::invalid_output(
                    "embedder returned a vector count other than one",
                ));
            }
        };
        check_finite(&embedding)?;
        Ok(EmbeddedQuery { query, embedding })
    }
    fn annotate_input(&self, input: &Query, a: &mut Annotations<'_>) {
        a.content(gen_ai::RETRIEVAL_QUERY_TEXT, || input.text.clone());
    }
    fn annotate_output(&self, output: &EmbeddedQuery, a: &mut Annotations<'_>) {
        a.attribute(KeyValue::new(
            gen_ai::EMBEDDINGS_DIMENSION_COUNT,
            output.embedding.dim() as i64,
        ));
    }
}

/// [`Embedder`] as a stage over many texts: `Vec<String> → Vec<Embedding>`
/// (indexing a corpus).
#[derive(Debug, Clone)]
pub struct EmbedTexts<E>(pub E);

#[async_trait]
impl<E: Embedder> Stage for EmbedTexts<E> {
    type Input = Vec<String>;
    type Output = Vec<Embedding>;
    fn describe(&self) -> StageDescriptor {
        self.0.describe()
    }
    async fn run(
        &self,
        texts: Vec<String>,
        ctx: &RequestContext,
    ) -> Result<Vec<Embedding>, StageError> {
        let vectors = self.0.embed(&texts, ctx).await?;
        if vectors.len() != texts.len() {
            return Err(StageError::invalid_output(format!(
                "embedder returned {} vectors for {} texts",
                vectors.len(),
                texts.len()
            )));
        }
        vectors.iter().try_for_each(check_finite)?;
        Ok(vectors)
    }
    fn annotate_input(&self, input: &Vec<String>, a: &mut Annotations<'_>) {
        a.attribute(KeyValue::new(spanline::INPUT_COUNT, input.len() as i64));
    }
    fn annotate_output(&self, output: &Vec<Embedding>, a: &mut Annotations<'_>) {
        if let Some(first) = output.first() {
            a.attribute(KeyValue::new(
                gen_ai::EMBEDDINGS_DIMENSION_COUNT,
                first.dim() as i64,
            ));
        }
    }
}

fn check_finite(e: &Embedding) -> Result<(), StageError> {
    if e.is_finite() {
        Ok(())
    } else {
        Err(StageError::invalid_output(
            "embedding holds NaN or infinite values",
        ))
    }
}

/// [`Retriever`] as a stage: `EmbeddedQuery → Retrieved`, keeping `top_k`.
#[derive(Debug, Clone)]
pub struct Retrieve<R> {
    retriever: R,
    top_k: usize,
}

impl<R: Retriever> Retrieve<R> {
    /// Retrieve the `top_k` best documents.
    pub fn new(retriever: R, top_k: usize) -> Self {
        Retrieve { retriever, top_k }
    }
}

#[async_trait]
impl<R: Retriever> Stage for Retrieve<R> {
    type Input = EmbeddedQuery;
    type Output = Retrieved;
    fn describe(&self) -> StageDescriptor {
        self.retriever.describe()
    }
    async fn run(
        &self,
        input: EmbeddedQuery,
        ctx: &RequestContext,
    ) -> Result<Retrieved, StageError> {
        let mut documents = self.retriever.retrieve(&input, self.top_k, ctx).await?;
        documents.truncate(self.top_k);
        Ok(Retrieved {
            query: input.query,
            documents,
        })
    }
    fn annotate_input(&self, input: &EmbeddedQuery, a: &mut Annotations<'_>) {
        a.attribute(KeyValue::new(gen_ai::REQUEST_TOP_K, self.top_k as i64));
        a.content(gen_ai::RETRIEVAL_QUERY_TEXT, || input.query.text.clone());
    }
    fn annotate_output(&self, output: &Retrieved, a: &mut Annotations<'_>) {
        annotate_documents(&output.documents, a);
    }
}

fn annotate_documents(documents: &[ScoredDocument], a: &mut Annotations<'_>) {
    a.attribute(KeyValue::new(
        spanline::OUTPUT_COUNT,
        documents.len() as i64,
    ));
    a.content(gen_ai::RETRIEVAL_DOCUMENTS, || {
        let docs: Vec<_> = documents
            .iter()
            .map(|d| serde_json::json!({"id": d.document.id, "score": d.score, "content": d.document.text}))
            .collect();
        serde_json::Value::Array(docs).to_string()
    });
}

/// [`Reranker`] as a stage: `Retrieved → Retrieved`, optionally keeping the
/// best `top_n`.
#[derive(Debug, Clone)]
pub struct Rerank<R> {
    reranker: R,
    top_n: Option<usize>,
}

impl<R: Reranker> Rerank<R> {
    /// Rerank and keep everything.
    pub fn new(reranker: R) -> Self {
        Rerank {
            reranker,
            top_n: None,
        }
    }
    /// Keep only the best `n` after reranking.
    pub fn top_n(mut self, n: usize) -> Self {
        self.top_n = Some(n);
        self
    }
}

#[async_trait]
impl<R: Reranker> Stage for Rerank<R> {
    type Input = Retrieved;
    type Output = Retrieved;
    fn describe(&self) -> StageDescriptor {
        self.reranker.describe()
    }
    async fn run(&self, input: Retrieved, ctx: &RequestContext) -> Result<Retrieved, StageError> {
        let mut documents = self
            .reranker
            .rerank(&input.query, input.documents, ctx)
            .await?;
        if documents.iter().any(|d| !d.score.is_finite()) {
            return Err(StageError::invalid_output(
                "reranker produced a non-finite score",
            ));
        }
        if let Some(n) = self.top_n {
            documents.truncate(n);
        }
        Ok(Retrieved {
            query: input.query,
            documents,
        })
    }
    fn annotate_input(&self, input: &Retrieved, a: &mut Annotations<'_>) {
        a.attribute(KeyValue::new(
            spanline::INPUT_COUNT,
            input.documents.len() as i64,
        ));
    }
    fn annotate_output(&self, output: &Retrieved, a: &mut Annotations<'_>) {
        annotate_documents(&output.documents, a);
    }
}

/// A callback receiving each piece of generated text.
pub type TokenSink = Arc<dyn Fn(&str) + Send + Sync>;

/// [`Generator`] as a stage: `GenerationRequest → Generation`. Consumes the
/// token stream, measuring time to first token and time per output token
/// (span attributes and the semconv histograms), and forwards each text
/// piece to an optional per-pipeline sink.
pub struct Generate<G> {
    generator: G,
    ttft: Histogram,
    tpot: Histogram,
    sink: Option<TokenSink>,
}

impl<G> std::fmt::Debug for Generate<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generate").finish_non_exhaustive()
    }
}

impl<G: Generator> Generate<G> {
    /// Wrap `generator`; registers its TTFT/TPOT histograms with the current
    /// `metrics` recorder.
    pub fn new(generator: G) -> Self {
        let d = generator.describe();
        let labels = |d: &StageDescriptor| {
            let mut l = vec![
                metrics::Label::new(gen_ai::OPERATION_NAME, d.kind.operation()),
                metrics::Label::new(
                    gen_ai::PROVIDER_NAME,
                    d.provider.clone().unwrap_or_default().to_string(),
                ),
            ];
            if let Some(m) = &d.model {
                l.push(metrics::Label::new(gen_ai::REQUEST_MODEL, m.to_string()));
            }
            l
        };
        Generate {
            ttft: metrics::histogram!(metric::GEN_AI_TIME_TO_FIRST_TOKEN, labels(&d)),
            tpot: metrics::histogram!(metric::GEN_AI_TIME_PER_OUTPUT_TOKEN, labels(&d)),
            generator,
            sink: None,
        }
    }

    /// Call `sink` with each piece of text as it is generated (to stream an
    /// answer to a terminal or a client).
    pub fn on_token(mut self, sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }
}

#[async_trait]
impl<G: Generator> Stage for Generate<G> {
    type Input = GenerationRequest;
    type Output = Generation;
    fn describe(&self) -> StageDescriptor {
        self.generator.describe()
    }
    async fn run(
        &self,
        request: GenerationRequest,
        ctx: &RequestContext,
    ) -> Result<Generation, StageError> {
        let start = Instant::now();
        let context = request.context.clone();
        let mut stream = self.generator.generate_stream(request, ctx).await?;
        let mut text = String::new();
        let mut first: Option<Instant> = None;
        let mut last = start;
        let mut pieces = 0u64;
        while let Some(item) = stream.next().await {
            match item? {
                Token::Text(piece) => {
                    let now = Instant::now();
                    if first.is_none() {
                        first = Some(now);
                        self.ttft.record((now - start).as_secs_f64());
                    } else {
                        self.tpot.record((now - last).as_secs_f64());
                    }
                    last = now;
                    pieces += 1;
                    if let Some(sink) = &self.sink {
                        sink(&piece);
                    }
                    text.push_str(&piece);
                }
                Token::Done {
                    usage,
                    finish_reason,
                } => {
                    let timings = GenerationTimings {
                        time_to_first_token: first.map(|f| (f - start).as_secs_f64()),
                        time_per_output_token: match first {
                            Some(f) if pieces > 1 => {
                                Some((last - f).as_secs_f64() / (pieces - 1) as f64)
                            }
                            _ => None,
                        },
                    };
                    return Ok(Generation {
                        text,
                        usage,
                        finish_reason,
                        response_model: None,
                        timings,
                        context,
                    });
                }
            }
        }
        Err(StageError::invalid_output(
            "token stream ended without a final Done",
        ))
    }
    fn annotate_input(&self, r: &GenerationRequest, a: &mut Annotations<'_>) {
        let p = &r.params;
        a.attribute(KeyValue::new(
            gen_ai::REQUEST_MAX_TOKENS,
            i64::from(p.max_tokens),
        ));
        a.attribute(KeyValue::new(
            gen_ai::REQUEST_TEMPERATURE,
            f64::from(p.temperature),
        ));
        a.attribute(KeyValue::new(gen_ai::REQUEST_TOP_P, f64::from(p.top_p)));
        a.attribute(KeyValue::new(gen_ai::REQUEST_STREAM, true));
        if let Some(k) = p.top_k {
            a.attribute(KeyValue::new(gen_ai::REQUEST_TOP_K, i64::from(k)));
        }
        if let Some(seed) = p.seed {
            a.attribute(KeyValue::new(gen_ai::REQUEST_SEED, seed as i64));
        }
        if !p.stop.is_empty() {
            // Stop sequences are request content: they may echo user text.
            a.content(gen_ai::REQUEST_STOP_SEQUENCES, || p.stop.join("\u{1f}"));
        }
        a.content(gen_ai::INPUT_MESSAGES, || {
            serde_json::to_string(&r.messages).unwrap_or_default()
        });
    }
    fn annotate_output(&self, g: &Generation, a: &mut Annotations<'_>) {
        a.usage(g.usage);
        a.attribute(KeyValue::new(
            gen_ai::RESPONSE_FINISH_REASONS,
            Value::Array(vec![StringValue::from(g.finish_reason.as_str())].into()),
        ));
        if let Some(m) = &g.response_model {
            a.attribute(KeyValue::new(gen_ai::RESPONSE_MODEL, m.clone()));
        }
        if let Some(t) = g.timings.time_to_first_token {
            a.attribute(KeyValue::new(gen_ai::TIME_TO_FIRST_TOKEN, t));
        }
        if let Some(t) = g.timings.time_per_output_token {
            a.attribute(KeyValue::new(gen_ai::TIME_PER_OUTPUT_TOKEN, t));
        }
        a.content(gen_ai::OUTPUT_MESSAGES, || {
            serde_json::json!([{"role": "assistant", "content": g.text}]).to_string()
        });
    }
}

/// Build a [`TokenStream`] from finished text split into pieces (for
/// generators that produce all at once).
pub fn stream_pieces(
    pieces: Vec<String>,
    usage: TokenUsage,
    finish_reason: FinishReason,
) -> TokenStream {
    let items = pieces
        .into_iter()
        .map(|p| Ok(Token::Text(p)))
        .chain(std::iter::once(Ok(Token::Done {
            usage,
            finish_reason,
        })));
    Box::pin(futures_util::stream::iter(items))
}
