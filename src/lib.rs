//! spanline: traced, timed, multi-stage ML inference pipelines.
//!
//! Build a pipeline from stages (preprocess → embed → retrieve → rerank →
//! generate); every stage call gets an OpenTelemetry span named per the
//! GenAI semantic conventions and a latency histogram through the `metrics`
//! facade, without the stage author writing telemetry code.
//!
//! ```
//! use spanline::core::basic::{ExtractiveGenerator, HashingEmbedder, PromptBuilder, VectorIndex};
//! use spanline::core::{Document, Embed, Generate, Pipeline, Query, RequestContext, Retrieve};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let embedder = HashingEmbedder::new(256);
//! let docs = vec![Document::new("otel", "Spans leave through the OTLP exporter.")];
//! let index = VectorIndex::build(&embedder, docs, &RequestContext::new()).await?;
//!
//! let rag = Pipeline::builder("rag")
//!     .then(Embed(embedder))
//!     .then(Retrieve::new(index, 3))
//!     .then(PromptBuilder::default())
//!     .then(Generate::new(ExtractiveGenerator::default()))
//!     .build();
//!
//! let answer = rag.run(Query::new("How do spans leave?"), &RequestContext::new()).await?;
//! assert!(answer.text.contains("[otel]"));
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `telemetry` (default) | [`telemetry`]: the SDK installer — OTLP and console exporters, samplers, Prometheus, the in-memory span recorder |
//! | `otlp` | OTLP export (part of `telemetry`; named for clarity) |
//! | `kafka` | `spanline::kafka`: header carriers, traced producer and consumer, request/reply stages and workers, embedded broker |
//! | `grpc` | `spanline::grpc`: metadata carriers, client/server tower layers, remote stage workers and pools |
//! | `log` | `spanline::log`: trace and span ids of the current stage on every `tracing` event |
//! | `models` | `spanline::models`: candle embedder, reranker and streaming generator, the OpenAI-compatible client, model file resolution |
//! | `full` | everything |

#[doc(inline)]
pub use spanline_core as core;

#[cfg(feature = "telemetry")]
#[doc(inline)]
pub use spanline_telemetry as telemetry;

#[cfg(feature = "kafka")]
#[doc(inline)]
pub use spanline_kafka as kafka;

#[cfg(feature = "grpc")]
#[doc(inline)]
pub use spanline_grpc as grpc;

#[cfg(feature = "models")]
#[doc(inline)]
pub use spanline_models as models;

#[cfg(feature = "log")]
#[doc(inline)]
pub use spanline_log as log;

#[doc(inline)]
pub use spanline_core::{
    Pipeline, RequestAttributes, RequestContext, Stage, StageDescriptor, StageError, StageExt,
    StageKind, Telemetry,
};

/// The README's code, compiled as a doctest so it cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
