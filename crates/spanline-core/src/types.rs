//! The values that flow between stages.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use serde::{Deserialize, Serialize};

use crate::error::StageError;

/// A user's question or search text, with the tokens a preprocessor found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// The text (possibly normalised by a preprocessor).
    pub text: String,
    /// Tokens of `text`, filled by a preprocessor (empty until then).
    #[serde(default)]
    pub tokens: Vec<String>,
}

impl Query {
    /// A query with `text` and no tokens yet.
    pub fn new(text: impl Into<String>) -> Self {
        Query {
            text: text.into(),
            tokens: Vec::new(),
        }
    }
}

impl From<&str> for Query {
    fn from(text: &str) -> Self {
        Query::new(text)
    }
}

impl From<String> for Query {
    fn from(text: String) -> Self {
        Query::new(text)
    }
}

/// A document or chunk in a corpus.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Stable identifier (used for citations and retrieval metrics).
    pub id: String,
    /// The text.
    pub text: String,
    /// Free-form metadata (source path, title, …).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl Document {
    /// A document with no metadata.
    pub fn new(id: impl Into<String>, text: impl Into<String>) -> Self {
        Document {
            id: id.into(),
            text: text.into(),
            metadata: BTreeMap::new(),
        }
    }
}

/// A document with a relevance score (higher is more relevant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredDocument {
    /// The document (shared: rerankers and fusion reorder without copying text).
    pub document: Arc<Document>,
    /// The score given by the last stage that scored it.
    pub score: f32,
}

impl ScoredDocument {
    /// Pair a document with a score.
    pub fn new(document: impl Into<Arc<Document>>, score: f32) -> Self {
        ScoredDocument {
            document: document.into(),
            score,
        }
    }
}

/// A dense vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding(pub Vec<f32>);

impl Embedding {
    /// Dimension count.
    pub fn dim(&self) -> usize {
        self.0.len()
    }

    /// Dot product; the cosine similarity when both are unit length.
    /// Vectors of different dimensions score 0.
    pub fn dot(&self, other: &Embedding) -> f32 {
        if self.0.len() != other.0.len() {
            return 0.0;
        }
        self.0.iter().zip(&other.0).map(|(a, b)| a * b).sum()
    }

    /// Whether every component is finite (no NaN or infinity).
    pub fn is_finite(&self) -> bool {
        self.0.iter().all(|v| v.is_finite())
    }
}

/// A query together with its embedding: what a dense retriever takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddedQuery {
    /// The query.
    pub query: Query,
    /// Its embedding.
    pub embedding: Embedding,
}

/// A query with the documents retrieved (and possibly reranked) for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieved {
    /// The query.
    pub query: Query,
    /// Documents, best first.
    pub documents: Vec<ScoredDocument>,
}

/// Who speaks in a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// System instructions.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
        }
    }
}

/// Sampling parameters of a generation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// Maximum tokens to generate.
    pub max_tokens: u32,
    /// Temperature; 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling mass (1.0 disables).
    pub top_p: f32,
    /// Keep the `top_k` most likely tokens (`None` disables).
    pub top_k: Option<u32>,
    /// Stop when any of these strings is produced.
    pub stop: Vec<String>,
    /// Random seed for reproducible sampling.
    pub seed: Option<u64>,
    /// Penalty for repeating tokens (1.0 disables).
    pub repetition_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            top_k: None,
            stop: Vec::new(),
            seed: None,
            repetition_penalty: 1.0,
        }
    }
}

/// What to generate from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    /// The conversation, system instructions first.
    pub messages: Vec<Message>,
    /// Sampling parameters.
    pub params: SamplingParams,
    /// Documents the answer should draw on (kept for citation).
    #[serde(default)]
    pub context: Vec<ScoredDocument>,
}

impl GenerationRequest {
    /// A request with one user message and default parameters.
    pub fn user(content: impl Into<String>) -> Self {
        GenerationRequest {
            messages: vec![Message::new(Role::User, content)],
            params: SamplingParams::default(),
            context: Vec::new(),
        }
    }
}

/// Token counts of a generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced its end-of-sequence token.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// A stop sequence was produced.
    StopSequence,
    /// Stopped by an error or cancellation.
    Error,
}

impl FinishReason {
    /// The semconv value for `gen_ai.response.finish_reasons`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::StopSequence => "stop_sequence",
            FinishReason::Error => "error",
        }
    }
}

/// Timings of a streamed generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationTimings {
    /// Seconds from the request to the first token.
    pub time_to_first_token: Option<f64>,
    /// Mean seconds per output token after the first.
    pub time_per_output_token: Option<f64>,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The generated text.
    pub text: String,
    /// Token counts.
    pub usage: TokenUsage,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// The model that answered, when it differs from the one requested.
    pub response_model: Option<String>,
    /// Stream timings, when the generation was streamed.
    #[serde(default)]
    pub timings: GenerationTimings,
    /// Documents the answer drew on (carried from the request for citation).
    #[serde(default)]
    pub context: Vec<ScoredDocument>,
}

/// One piece of a streamed generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Token {
    /// Generated text (one or more model tokens' worth).
    Text(String),
    /// The end of the stream, with the totals.
    Done {
        /// Token counts.
        usage: TokenUsage,
        /// Why it stopped.
        finish_reason: FinishReason,
    },
}

/// A stream of generated tokens.
pub type TokenStream = Pin<Box<dyn Stream<Item = Result<Token, StageError>> + Send + 'static>>;
