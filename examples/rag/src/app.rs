//! The RAG pipeline and its two workers.
//!
//! ```text
//! preprocess ─ embed ─┬─ retrieve-dense (Kafka request/reply → retrieval worker) ─┬─ fuse ─ rerank (gRPC worker;
//!                     └─ retrieve-keyword (BM25, local) ─────────────────────────┘        timeout → fused order)
//!   ─ prompt ─ generate (SmolLM2, streamed; or an OpenAI-compatible server) ─ cite
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use spanline::core::basic::{Bm25Index, Normalizer, ReciprocalRankFusion, VectorIndex};
use spanline::core::{
    Embed, EmbeddedQuery, Generate, Generation, GenerationRequest, Generator, Pipeline, Preprocess,
    Query, RequestContext, Rerank, Retrieve, Retrieved, ScoredDocument, StageDescriptor,
    StageError, StageExt, StageKind, Step, Telemetry, TokenStream, TokenUsage, stage_fn,
};
use spanline::grpc::{RemoteStage, WorkerChannel};
use spanline::kafka::{
    EmbeddedBroker, KafkaConfig, RequestReply, RequestReplyConfig, StageHandler, Worker,
    WorkerConfig,
};
use spanline::models::openai::OpenAiGenerator;
use spanline::models::{BertEmbedder, LlamaGenerator, ModelResolver};

use crate::answer::{self, Strategy};
use crate::corpus::Corpus;
use crate::rerank::{RagReranker, RerankerKind};

/// Topic the retrieval workers consume.
pub const REQUEST_TOPIC: &str = "rag.retrieve.requests";
/// Topic replies come back on.
pub const REPLY_TOPIC: &str = "rag.retrieve.replies";
/// Consumer group of the retrieval workers.
pub const RETRIEVAL_GROUP: &str = "rag-retrieval-workers";
/// The rerank stage's name on the gRPC worker.
pub const RERANK_STAGE: &str = "rerank";
const MINILM: &str = "all-MiniLM-L6-v2";

/// Everything the example can be told.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Folder of Markdown/text files to answer from.
    pub corpus: PathBuf,
    /// Kafka bootstrap servers; `None` starts the embedded broker.
    pub bootstrap_servers: Option<String>,
    /// The gRPC rerank worker (`http://host:port`); `None` starts one
    /// in-process on loopback.
    pub rerank_worker: Option<String>,
    /// Start no retrieval worker here: separate processes serve the topic.
    pub external_retrieval: bool,
    /// An OpenAI-compatible server (`base_url`, `model`) instead of SmolLM2.
    pub openai: Option<(String, String)>,
    /// Longest answer, in tokens.
    pub max_tokens: u32,
    /// Documents each retriever returns.
    pub top_k: usize,
    /// Documents kept after reranking (recall@k is measured on these).
    pub keep: usize,
    /// Documents placed in the prompt.
    pub prompt_docs: usize,
    /// How long reranking may take before the fused order is used.
    pub rerank_timeout: Duration,
    /// Deadline of one request.
    pub request_timeout: Duration,
    /// How the answer is made from the passages.
    pub strategy: Strategy,
    /// What the gRPC rerank worker runs (when started here).
    pub reranker: RerankerKind,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            corpus: default_corpus(),
            bootstrap_servers: None,
            rerank_worker: None,
            external_retrieval: false,
            openai: None,
            max_tokens: 48,
            top_k: 8,
            keep: 5,
            prompt_docs: 3,
            rerank_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(300),
            strategy: Strategy::default(),
            reranker: RerankerKind::default(),
        }
    }
}

/// This repository's `docs/`.
pub fn default_corpus() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs"))
}

/// What went wrong setting up.
#[derive(Debug, thiserror::Error)]
pub enum RagError {
    /// The corpus.
    #[error(transparent)]
    Corpus(#[from] crate::corpus::CorpusError),
    /// A model.
    #[error(transparent)]
    Model(#[from] spanline::models::ModelError),
    /// The OpenAI-compatible client.
    #[error(transparent)]
    OpenAi(#[from] spanline::models::openai::OpenAiError),
    /// Kafka.
    #[error(transparent)]
    Kafka(#[from] spanline::kafka::KafkaError),
    /// gRPC.
    #[error(transparent)]
    Grpc(#[from] spanline::grpc::GrpcError),
    /// A stage, while indexing.
    #[error(transparent)]
    Stage(#[from] StageError),
    /// Anything else (I/O, configuration).
    #[error("{0}")]
    Other(String),
}

/// The answer to one question.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// What the model said.
    pub text: String,
    /// The chunks given to the model, `[1]` first, and whether the text
    /// cites each.
    pub citations: Vec<Citation>,
    /// The reranked documents (the retrieval result recall is measured on).
    pub ranked: Vec<ScoredDocument>,
    /// Token counts.
    pub usage: TokenUsage,
    /// Whether the text is the best evidence sentence rather than the
    /// model's (its answer was not supported by the passages).
    pub extractive: bool,
    /// What the model generated (citation markers removed).
    pub generated: String,
    /// Share of the answer's sentences supported by a sentence of a
    /// passage it cites (docs/rag-example.md, "Groundedness").
    pub groundedness: f64,
    /// The same share for the generated text.
    pub generated_groundedness: f64,
}

/// A chunk the answer drew on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Citation {
    /// Its marker in the prompt, `[n]`.
    pub marker: usize,
    /// The chunk id (`path#section`).
    pub id: String,
    /// Whether the answer text cites `[n]`.
    pub cited: bool,
}

/// The models, loaded once and shared by the pipeline and the in-process
/// workers.
#[derive(Clone, Debug)]
pub struct Models {
    /// all-MiniLM-L6-v2.
    pub embedder: BertEmbedder,
    /// The generator.
    pub generator: AnyGenerator,
}

impl Models {
    /// Resolve (fetching on first use) and load the models.
    pub fn load(settings: &Settings) -> Result<Models, RagError> {
        let resolver = ModelResolver::from_env();
        let embedder = BertEmbedder::minilm(&resolver)?;
        let generator = match &settings.openai {
            Some((url, model)) => AnyGenerator::Remote(
                OpenAiGenerator::builder(url.as_str(), model.as_str()).build()?,
            ),
            None => AnyGenerator::Local(LlamaGenerator::smollm2(&resolver)?),
        };
        Ok(Models {
            embedder,
            generator,
        })
    }
}

/// SmolLM2 in-process or an OpenAI-compatible server.
#[derive(Clone, Debug)]
pub enum AnyGenerator {
    /// candle, in this process.
    Local(LlamaGenerator),
    /// A model server.
    Remote(OpenAiGenerator),
}

#[async_trait]
impl Generator for AnyGenerator {
    fn describe(&self) -> StageDescriptor {
        match self {
            AnyGenerator::Local(g) => g.describe(),
            AnyGenerator::Remote(g) => g.describe(),
        }
    }
    async fn generate_stream(
        &self,
        request: GenerationRequest,
        ctx: &RequestContext,
    ) -> Result<TokenStream, StageError> {
        match self {
            AnyGenerator::Local(g) => g.generate_stream(request, ctx).await,
            AnyGenerator::Remote(g) => g.generate_stream(request, ctx).await,
        }
    }
}

/// Kafka configuration for `settings`: the given bootstrap servers, else
/// `KAFKA_BOOTSTRAP_SERVERS`, else a new embedded broker. Topics are
/// created when missing.
pub async fn kafka(settings: &Settings) -> Result<KafkaConfig, RagError> {
    let env = std::env::var(spanline::kafka::BOOTSTRAP_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty());
    let servers = settings.bootstrap_servers.clone().or(env);
    let config = match &servers {
        Some(s) => KafkaConfig::new().bootstrap_servers(s.clone()),
        None => KafkaConfig::new()
            .without_env()
            .embedded(Arc::new(EmbeddedBroker::start(1)?)),
    };
    ensure_topics(&config, servers.as_deref()).await?;
    Ok(config)
}

async fn ensure_topics(config: &KafkaConfig, servers: Option<&str>) -> Result<(), RagError> {
    if let Some(broker) = config.embedded_broker() {
        broker.create_topic(REQUEST_TOPIC, 2)?;
        broker.create_topic(REPLY_TOPIC, 1)?;
        return Ok(());
    }
    use spanline::kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use spanline::kafka::rdkafka::client::DefaultClientContext;
    use spanline::kafka::rdkafka::types::RDKafkaErrorCode;
    let servers = servers.unwrap_or_default();
    let admin: AdminClient<DefaultClientContext> = spanline::kafka::rdkafka::ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .map_err(|e| RagError::Other(format!("Kafka admin client: {e}")))?;
    // Create only what is missing (metadata first: some brokers, the mock
    // cluster among them, refuse CreateTopics from a separate client).
    let wanted = [(REQUEST_TOPIC, 2), (REPLY_TOPIC, 1)];
    let probe_servers = servers.to_string();
    let existing: Vec<String> = tokio::task::spawn_blocking(move || {
        use spanline::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
        let probe: BaseConsumer = spanline::kafka::rdkafka::ClientConfig::new()
            .set("bootstrap.servers", probe_servers)
            .create()?;
        probe
            .fetch_metadata(None, Duration::from_secs(10))
            .map(|md| {
                md.topics()
                    .iter()
                    .filter(|t| t.error().is_none())
                    .map(|t| t.name().to_string())
                    .collect()
            })
    })
    .await
    .map_err(|e| RagError::Other(e.to_string()))?
    .map_err(|e| RagError::Other(format!("Kafka metadata from {servers}: {e}")))?;
    let topics: Vec<NewTopic<'_>> = wanted
        .iter()
        .filter(|(t, _)| !existing.iter().any(|e| e == t))
        .map(|&(t, p)| NewTopic::new(t, p, TopicReplication::Fixed(1)))
        .collect();
    if topics.is_empty() {
        return Ok(());
    }
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    // Some brokers (librdkafka's mock cluster among them) never answer
    // CreateTopics; the topics then exist already or are auto-created.
    let Ok(results) = tokio::time::timeout(
        Duration::from_secs(12),
        admin.create_topics(&topics, &options),
    )
    .await
    else {
        eprintln!("rag: {servers} did not answer CreateTopics; assuming the topics exist");
        return Ok(());
    };
    let results =
        results.map_err(|e| RagError::Other(format!("creating topics on {servers}: {e}")))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(RagError::Other(format!("creating topic {topic}: {code}")));
            }
        }
    }
    Ok(())
}

/// A Kafka retrieval worker: owns the dense index over `corpus` (embedded
/// at start) and answers `EmbeddedQuery → Retrieved` requests.
pub async fn retrieval_worker(
    kafka: &KafkaConfig,
    telemetry: &Telemetry,
    embedder: &BertEmbedder,
    corpus: &Corpus,
    top_k: usize,
    assignment: WorkerConfig,
) -> Result<Worker<impl spanline::kafka::Handler + 'static>, RagError> {
    let index = dense_index(embedder, corpus).await?.named("docs-dense");
    let stage = Pipeline::builder("retrieval-worker")
        .telemetry(telemetry.clone())
        .then(Retrieve::new(index, top_k))
        .build();
    Ok(Worker::build(kafka, telemetry.clone(), assignment, |p| {
        StageHandler::new(stage, p.clone())
    })?)
}

/// The dense index over `corpus`: embeddings are cached on disk (in the
/// model cache, keyed by a hash of the chunks and the model), so only the
/// first start over a corpus pays for embedding it.
pub async fn dense_index(
    embedder: &BertEmbedder,
    corpus: &Corpus,
) -> Result<VectorIndex, RagError> {
    let path = index_cache_path(corpus);
    if let Some(vectors) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<spanline::core::Embedding>>(&b).ok())
        .filter(|v| v.len() == corpus.chunks.len() && v.iter().all(|e| e.is_finite()))
    {
        return Ok(VectorIndex::from_embeddings(
            corpus.chunks.clone(),
            vectors,
        )?);
    }
    let texts: Vec<String> = corpus.chunks.iter().map(|d| d.text.clone()).collect();
    let embedder = embedder.clone();
    let vectors = tokio::task::spawn_blocking(move || embed_with_progress(&embedder, &texts))
        .await
        .map_err(|e| RagError::Other(format!("indexing: {e}")))??;
    // A cache that cannot be written only costs the next start its time.
    if let Some(dir) = path.parent()
        && std::fs::create_dir_all(dir).is_ok()
        && let Ok(json) = serde_json::to_vec(&vectors)
    {
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        if std::fs::write(&partial, json).is_ok() {
            let _ = std::fs::rename(&partial, &path);
        }
    }
    Ok(VectorIndex::from_embeddings(
        corpus.chunks.clone(),
        vectors,
    )?)
}

/// Chunks embedded per progress step.
const INDEX_BATCH: usize = 16;
/// Without a terminal, a progress line every this many chunks.
const PLAIN_PROGRESS_EVERY: usize = 64;

/// Embed `texts` in batches, reporting progress on stderr: a line
/// rewritten in place on a terminal, a plain line every
/// [`PLAIN_PROGRESS_EVERY`] chunks otherwise.
fn embed_with_progress(
    embedder: &BertEmbedder,
    texts: &[String],
) -> Result<Vec<spanline::core::Embedding>, spanline::models::ModelError> {
    use std::io::{IsTerminal, Write};
    let terminal = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let mut vectors = Vec::with_capacity(texts.len());
    let mut last_plain = 0;
    for batch in texts.chunks(INDEX_BATCH) {
        vectors.extend(embedder.embed_blocking(batch)?.embeddings);
        let line = progress_line(vectors.len(), texts.len(), started.elapsed());
        let mut err = std::io::stderr().lock();
        if terminal {
            let _ = write!(err, "\r{line}\x1b[K");
            if vectors.len() == texts.len() {
                let _ = writeln!(err);
            }
        } else if vectors.len() - last_plain >= PLAIN_PROGRESS_EVERY || vectors.len() == texts.len()
        {
            last_plain = vectors.len();
            let _ = writeln!(err, "{line}");
        }
    }
    Ok(vectors)
}

/// `rag: indexing 48/268 chunks, 3.1 chunks/s, 71 s left`.
pub fn progress_line(done: usize, total: usize, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let left = if rate > 0.0 {
        format!("{:.0} s left", (total - done.min(total)) as f64 / rate)
    } else {
        "time left unknown".into()
    };
    format!("rag: indexing {done}/{total} chunks, {rate:.1} chunks/s, {left}")
}

fn index_cache_path(corpus: &Corpus) -> PathBuf {
    // FNV-1a over the model name, ids and texts: stable across builds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes.iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(MINILM.as_bytes());
    for d in &corpus.chunks {
        eat(d.id.as_bytes());
        eat(d.text.as_bytes());
    }
    ModelResolver::from_env()
        .cache_path()
        .join("rag-index")
        .join(format!("{h:016x}.json"))
}

/// The consumer setup of an in-process retrieval worker (the only member:
/// it takes every partition at once, without a group rebalance).
pub fn local_assignment() -> WorkerConfig {
    WorkerConfig::assign(RETRIEVAL_GROUP, REQUEST_TOPIC, &[0, 1])
}

/// The consumer setup of a retrieval worker process (one member of the
/// group; partitions are shared among the members).
pub fn group_assignment() -> WorkerConfig {
    WorkerConfig::subscribe(RETRIEVAL_GROUP, REQUEST_TOPIC)
}

/// A gRPC worker hosting the reranker `kind` (over MiniLM) as
/// [`RERANK_STAGE`], keeping the best `keep`.
pub fn rerank_worker(
    telemetry: &Telemetry,
    embedder: &BertEmbedder,
    kind: RerankerKind,
    keep: usize,
) -> spanline::grpc::Worker {
    let reranker = RagReranker::new(kind, embedder.clone(), MINILM);
    spanline::grpc::Worker::builder(telemetry.clone())
        .stage(Rerank::new(reranker).top_n(keep))
        // A rerank takes a few seconds; one still running 10 s after
        // shutdown was asked for has lost its caller.
        .drain_timeout(Duration::from_secs(10))
        .build()
}

/// The question-answering pipeline over already running workers.
pub struct Rag<S> {
    pipeline: Pipeline<S>,
    request_timeout: Duration,
}

impl<S: Step<Input = Query, Output = Answer>> Rag<S> {
    /// Answer `question`.
    pub async fn ask(&self, question: &str, ctx: &RequestContext) -> Result<Answer, StageError> {
        let ctx = ctx.clone().with_timeout(self.request_timeout);
        self.pipeline.run(Query::new(question), &ctx).await
    }
}

/// The dense-retrieval stage: a Kafka request/reply to the retrieval
/// workers. Its metrics handles bind to the recorder current when this is
/// called (not when awaited).
pub fn connect_dense(
    settings: &Settings,
    telemetry: &Telemetry,
    kafka: &KafkaConfig,
) -> impl std::future::Future<
    Output = Result<RequestReply<EmbeddedQuery, Retrieved>, spanline::kafka::KafkaError>,
> + Send
+ 'static {
    RequestReply::connect(
        kafka,
        telemetry.clone(),
        RequestReplyConfig::new(
            StageDescriptor::new("retrieve-dense", StageKind::Retrieve)
                .data_source("docs-dense")
                .model(MINILM),
            REQUEST_TOPIC,
            REPLY_TOPIC,
        )
        .timeout(settings.request_timeout),
    )
}

/// Assemble the pipeline around a connected `dense` stage. `on_token`
/// receives the answer as it streams.
pub fn pipeline(
    settings: &Settings,
    telemetry: &Telemetry,
    models: &Models,
    corpus: &Corpus,
    dense: RequestReply<EmbeddedQuery, Retrieved>,
    rerank_uri: &str,
    on_token: spanline::core::adapters::TokenSink,
) -> Result<Rag<impl Step<Input = Query, Output = Answer> + use<>>, RagError> {
    let keyword = Bm25Index::new(corpus.chunks.clone()).named("docs-keyword");
    let channel = WorkerChannel::connect_lazy(rerank_uri, telemetry.clone())?;
    let rerank: RemoteStage<Retrieved, Retrieved> = channel.stage(
        StageDescriptor::new(RERANK_STAGE, StageKind::Rerank)
            .model(MINILM)
            .provider("candle"),
    );
    let keep = settings.keep;
    let fused_order = stage_fn(
        StageDescriptor::new("fused-order", StageKind::Rerank),
        move |mut r: Retrieved, _ctx| async move {
            r.documents.truncate(keep);
            Ok::<_, StageError>(r)
        },
    );
    let prompt_docs = settings.prompt_docs;
    let (strategy, max_tokens) = (settings.strategy, settings.max_tokens);
    let embedder = models.embedder.clone();
    let evidence = stage_fn(
        StageDescriptor::new("evidence", StageKind::Preprocess)
            .model(MINILM)
            .provider("candle"),
        move |r: Retrieved, ctx| {
            let embedder = embedder.clone();
            async move { answer::select_evidence(&embedder, r, prompt_docs, &ctx).await }
        },
    );
    let prompt = stage_fn(
        StageDescriptor::new("prompt", StageKind::Preprocess),
        move |r: Retrieved, _ctx| async move {
            Ok::<_, StageError>(answer::build_prompt(r, prompt_docs, strategy, max_tokens))
        },
    );
    let cite = stage_fn(
        StageDescriptor::new("cite", StageKind::Postprocess),
        move |g: Generation, _ctx| async move {
            Ok::<_, StageError>(answer::cite(g, prompt_docs, strategy))
        },
    );
    let pipeline = Pipeline::builder("rag")
        .telemetry(telemetry.clone())
        .then(Preprocess(Normalizer::default()))
        .then(Embed(models.embedder.clone()))
        .parallel((dense, Retrieve::new(keyword, settings.top_k)))
        .then(ReciprocalRankFusion::new(settings.top_k))
        .then(
            rerank
                .with_timeout(settings.rerank_timeout)
                .with_fallback(fused_order),
        )
        .then(evidence)
        .then(prompt)
        .then(Generate::new(models.generator.clone()).on_token(move |piece| on_token(piece)))
        .then(cite)
        .build();
    Ok(Rag {
        pipeline,
        request_timeout: settings.request_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_says_count_rate_and_time_left() {
        assert_eq!(
            progress_line(48, 268, Duration::from_secs(16)),
            "rag: indexing 48/268 chunks, 3.0 chunks/s, 73 s left"
        );
        assert_eq!(
            progress_line(0, 10, Duration::ZERO),
            "rag: indexing 0/10 chunks, 0.0 chunks/s, time left unknown"
        );
        assert!(progress_line(10, 10, Duration::from_secs(2)).ends_with("0 s left"));
    }
}
