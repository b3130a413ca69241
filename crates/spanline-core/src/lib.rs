//! Stage traits, typed pipelines and the instrumentation layer of spanline.
//!
//! A pipeline is a typed chain of stages. Every stage call is wrapped in a
//! layer that opens a span named per the OpenTelemetry GenAI conventions,
//! records a latency histogram with bounded labels, records errors, and
//! applies timeouts and fallbacks. The request context is passed explicitly
//! to every stage, so traces survive `.await`, spawns and process hops.
//!
//! ```
//! use spanline_core::basic::{HashingEmbedder, Normalizer, VectorIndex};
//! use spanline_core::{Document, Embed, Pipeline, Preprocess, Query, RequestContext, Retrieve, Telemetry};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let embedder = HashingEmbedder::new(256);
//! let docs = vec![
//!     Document::new("kafka", "Trace context travels in Kafka message headers."),
//!     Document::new("grpc", "gRPC metadata carries the traceparent header."),
//! ];
//! let index = VectorIndex::build(&embedder, docs, &RequestContext::new()).await?;
//!
//! let pipeline = Pipeline::builder("search")
//!     .telemetry(Telemetry::global())
//!     .then(Preprocess(Normalizer::default()))
//!     .then(Embed(embedder))
//!     .then(Retrieve::new(index, 1))
//!     .build();
//!
//! let found = pipeline
//!     .run(Query::new("How do Kafka headers carry the trace?"), &RequestContext::new())
//!     .await?;
//! assert_eq!(found.documents[0].document.id, "kafka");
//! # Ok(())
//! # }
//! ```
//!
//! Composition is checked by the compiler: `Retrieve` takes the
//! `EmbeddedQuery` that `Embed` gives, and swapping them does not compile.

pub mod adapters;
pub mod basic;
mod context;
mod error;
mod layer;
mod pipeline;
pub mod propagation;
pub mod semconv;
mod stage;
mod telemetry;
mod types;

pub use adapters::{
    Embed, EmbedTexts, Embedder, Generate, Generator, Preprocess, Preprocessor, Rerank, Reranker,
    Retrieve, Retriever,
};
pub use context::{RequestAttributes, RequestAttributesBuilder, RequestContext};
pub use error::{AttributeError, BoxError, ErrorKind, StageError};
pub use layer::{
    Fallback, FallbackStep, Guarded, Instrumented, NoRecovery, Placement, Recovery, RecoverySpec,
    Skip, StageExt, Step,
};
pub use pipeline::{
    Batch, BatchStep, IntoParallel, IntoStep, Parallel, Pipeline, PipelineBuilder, Start, Then,
    batch,
};
pub use propagation::TraceCarrier;
pub use stage::{Annotations, FnStage, Stage, StageDescriptor, StageKind, stage_fn};
pub use telemetry::Telemetry;
pub use types::{
    Document, EmbeddedQuery, Embedding, FinishReason, Generation, GenerationRequest,
    GenerationTimings, Message, Query, Retrieved, Role, SamplingParams, ScoredDocument, Token,
    TokenStream, TokenUsage,
};
