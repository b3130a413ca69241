//! Real model stages for spanline: sentence embeddings, reranking and
//! streaming generation with [candle] on the CPU, an OpenAI-compatible
//! remote generator, and model file resolution.
//!
//! ```no_run
//! # #[cfg(feature = "candle")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use spanline_core::{Embed, Pipeline, Query, RequestContext, Telemetry};
//! use spanline_models::{BertEmbedder, ModelResolver};
//!
//! // Finds all-MiniLM-L6-v2 on disk, or fetches it once with pip.
//! let embedder = BertEmbedder::minilm(&ModelResolver::from_env())?;
//! let pipeline = Pipeline::builder("embed-query")
//!     .telemetry(Telemetry::global())
//!     .then(Embed(embedder))
//!     .build();
//! let out = pipeline
//!     .run(Query::new("How are traces propagated?"), &RequestContext::new())
//!     .await?;
//! assert_eq!(out.embedding.dim(), 384);
//! # Ok(()) }
//! ```
//!
//! Everything that computes runs on `InferenceThreads`, never on the
//! async runtime's workers, with the request context carried in so spans
//! from inside inference (prefill, decode) attach to the calling stage.
//! Which models, where their files come from and what they cost here:
//! `docs/models.md`.
//!
//! Feature `candle` (default) holds the local models; without it the crate
//! is the OpenAI-compatible client and the resolver, and compiles in
//! seconds.
//!
//! [candle]: https://github.com/huggingface/candle
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "candle")]
mod bert;
#[cfg(feature = "candle")]
mod embed;
mod error;
#[cfg(feature = "candle")]
mod llama;
pub mod openai;
#[cfg(feature = "candle")]
mod rerank;
mod resolve;
#[cfg(feature = "candle")]
mod threads;

#[cfg(feature = "candle")]
pub use embed::{BertEmbedder, EmbedOutput};
pub use error::ModelError;
#[cfg(feature = "candle")]
pub use llama::{ChatFormat, LlamaGenerator, LoadOptions};
#[cfg(feature = "candle")]
pub use rerank::{BiEncoderReranker, CrossEncoderReranker, Scores};
pub use resolve::{
    ALL_MINILM_L6_V2, ModelResolver, ModelSpec, Origin, ResolvedModel, SMOLLM2_135M_INSTRUCT,
};
#[cfg(feature = "candle")]
pub use threads::InferenceThreads;

/// The candle crates this crate is built on, for code that writes or
/// inspects checkpoints with the same versions.
#[cfg(feature = "candle")]
pub mod candle {
    pub use candle_core as core;
    pub use candle_nn as nn;
    pub use candle_transformers as transformers;
}
