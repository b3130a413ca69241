//! Shared fixtures for the behaviour tests: a small corpus, the model-free
//! RAG pipeline, and fake stages that isolate one behaviour each.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use async_trait::async_trait;
use spanline_core::basic::{
    Bm25Index, ExtractiveGenerator, HashingEmbedder, KeywordReranker, Normalizer, PromptBuilder,
    ReciprocalRankFusion, VectorIndex,
};
use spanline_core::{
    Document, Embed, Generate, IntoStep, Pipeline, Preprocess, Query, RequestContext, Rerank,
    Retrieve, Retrieved, Stage, StageDescriptor, StageError, StageKind, Step, Telemetry,
};

pub const PIPELINE: &str = "rag";

pub fn corpus() -> Vec<Document> {
    vec![
        Document::new(
            "kafka",
            "Kafka messages carry the traceparent header. The consumer continues the trace.",
        ),
        Document::new(
            "grpc",
            "gRPC metadata carries the traceparent header between services.",
        ),
        Document::new(
            "metrics",
            "Every stage records a latency histogram with bounded labels.",
        ),
        Document::new("fruit", "Bananas are yellow and apples are red."),
    ]
}

/// preprocess → embed → (dense ∥ keyword) → fuse → rerank → prompt → generate
pub async fn rag_pipeline(
    telemetry: Telemetry,
) -> Pipeline<impl Step<Input = Query, Output = spanline_core::Generation>> {
    rag_pipeline_with(telemetry, Rerank::new(KeywordReranker).top_n(3)).await
}

/// The same pipeline with a chosen rerank step.
pub async fn rag_pipeline_with<R>(
    telemetry: Telemetry,
    rerank: R,
) -> Pipeline<impl Step<Input = Query, Output = spanline_core::Generation>>
where
    R: IntoStep<Input = Retrieved, Output = Retrieved>,
{
    let embedder = HashingEmbedder::new(256);
    let dense = VectorIndex::build(&embedder, corpus(), &RequestContext::new())
        .await
        .expect("index builds")
        .named("docs-dense");
    let keyword = Bm25Index::new(corpus()).named("docs-bm25");
    Pipeline::builder(PIPELINE)
        .telemetry(telemetry)
        .then(Preprocess(Normalizer::default()))
        .then(Embed(embedder))
        .parallel((Retrieve::new(dense, 3), Retrieve::new(keyword, 3)))
        .then(ReciprocalRankFusion::new(4))
        .then(rerank)
        .then(PromptBuilder::default())
        .then(Generate::new(ExtractiveGenerator::default()))
        .build()
}

/// A stage that fails with `message` (which may hold request content).
pub struct Failing {
    pub name: &'static str,
    pub message: String,
}

#[async_trait]
impl Stage for Failing {
    type Input = Retrieved;
    type Output = Retrieved;
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new(self.name, StageKind::Rerank)
    }
    async fn run(&self, _: Retrieved, _: &RequestContext) -> Result<Retrieved, StageError> {
        Err(StageError::model(self.message.clone()))
    }
}

/// A stage that never finishes on its own: only a timeout, a deadline or
/// cancellation ends it.
pub struct Stuck;

#[async_trait]
impl Stage for Stuck {
    type Input = Retrieved;
    type Output = Retrieved;
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("stuck-rerank", StageKind::Rerank)
    }
    async fn run(&self, _: Retrieved, _: &RequestContext) -> Result<Retrieved, StageError> {
        std::future::pending().await
    }
}

pub const SHORT: Duration = Duration::from_millis(50);
