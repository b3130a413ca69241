//! The bundled RAG example as a library: the pipeline, its workers, the
//! corpus loader and the reports, shared by the `rag` binary and its
//! tests. Start with `docs/rag-example.md`.

pub mod answer;
pub mod app;
pub mod corpus;
pub mod evidence;
pub mod report;
pub mod rerank;
mod stack;

pub use app::{Answer, Models, RagError, Settings};
pub use stack::Stack;
