//! A [`Generator`] for any server that speaks the OpenAI chat completions
//! API: vLLM, Hugging Face TGI, the llama.cpp server (and
//! `llama-cpp-python`'s), Ollama's `/v1`, LiteLLM and hosted routers.
//!
//! It streams: `POST {base_url}/chat/completions` with `"stream": true`,
//! reads the Server-Sent Events as they arrive and hands each text delta
//! on as a [`Token::Text`], so the
//! [`Generate`](spanline_core::Generate) adapter measures the real time to
//! first token and time per output token. The stage is remote: its span is
//! a CLIENT span named `chat {model}` with `gen_ai.provider.name`,
//! `server.address` and `server.port`, and the request carries the W3C
//! `traceparent` so a server that traces (vLLM with
//! `--otlp-traces-endpoint`) continues the trace.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use spanline_core::{Generate, GenerationRequest, Pipeline, RequestContext, Telemetry};
//! use spanline_models::openai::{OpenAiGenerator, Timeouts};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let generator = OpenAiGenerator::builder("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-0.5B-Instruct")
//!     .provider("vllm")
//!     .api_key(std::env::var("OPENAI_API_KEY").unwrap_or_default())
//!     .timeouts(Timeouts::default().first_byte(Duration::from_secs(30)))
//!     .build()?;
//!
//! let pipeline = Pipeline::builder("answer")
//!     .telemetry(Telemetry::global())
//!     .then(Generate::new(generator).on_token(|t| print!("{t}")))
//!     .build();
//!
//! let mut request = GenerationRequest::user("Why is the sky blue? One sentence.");
//! request.params.max_tokens = 64;
//! let answer = pipeline.run(request, &RequestContext::new()).await?;
//! println!("\n{} output tokens, stopped by {:?}", answer.usage.output_tokens, answer.finish_reason);
//! # Ok(())
//! # }
//! ```
//!
//! # What is sent
//!
//! `model`, `messages`, `stream: true`, `stream_options: {"include_usage":
//! true}` (turn off with [`OpenAiGeneratorBuilder::stream_usage`] for
//! servers that reject it), `max_tokens`, `temperature`, `top_p`, and only
//! when set: `stop`, `seed`, `top_k` and the repetition penalty. The last
//! two are not part of OpenAI's API: vLLM and llama.cpp accept `top_k`; the
//! penalty is sent as both `repetition_penalty` (vLLM, TGI) and
//! `repeat_penalty` (the llama.cpp server, `llama-cpp-python`), because
//! each server ignores the name it does not know. OpenAI itself rejects
//! both, so leave them unset (`top_k: None`, `repetition_penalty: 1.0`)
//! there.
//!
//! # What is read
//!
//! Text deltas (`choices[0].delta.content`), the finish reason (see
//! [`FinishReason`] mapping in [`OpenAiGeneratorBuilder`]), the usage of the final chunk, and the
//! response model and id (set on the stage span as
//! `gen_ai.response.model` / `gen_ai.response.id`). When the server sends
//! no usage, output tokens are the number of text chunks received (one per
//! token on the servers above) and input tokens are 0. A server that
//! answers with a whole `application/json` completion instead of a stream
//! is accepted as one piece.
//!
//! # Errors
//!
//! [`OpenAiError`] says what went wrong; [`OpenAiError::kind`] maps it onto
//! a [`StageError`] kind (connection refused → `Unavailable`, timeouts →
//! `Timeout`, the request deadline → `DeadlineExceeded`, HTTP 4xx →
//! `InvalidInput`, 429 → `ResourceExhausted`, 5xx → `Unavailable`, a
//! malformed or oversized stream → `InvalidOutput`). Server-sent text (an
//! error body, truncated to 512 bytes) appears in the message only when the
//! request's content capture is on.
//!
//! # TLS
//!
//! Plain HTTP by default. The `tls` feature adds HTTPS through rustls (ring
//! provider) with the platform's root certificates (`SSL_CERT_FILE` /
//! `SSL_CERT_DIR` point it at a private CA). Without it, an `https` base
//! URL is refused at build time; put a TLS-terminating proxy on the local
//! machine in front of the remote endpoint instead.

mod config;
mod error;
mod sse;
mod stream;
mod transport;
mod wire;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper::{HeaderMap, Method, Request};
use spanline_core::propagation::TraceCarrier;
use spanline_core::semconv::gen_ai;
use spanline_core::{
    FinishReason, GenerationRequest, Generator, RequestContext, StageDescriptor, StageError,
    StageKind, Token, TokenStream,
};
use tokio::time::Instant;

pub use config::{Limits, Timeouts};
pub use error::OpenAiError;

use config::ERROR_EXCERPT_BYTES;
use stream::{Reader, Summary, Wait};
use transport::{Endpoint, HttpClient};

/// A streaming chat-completions client as a [`Generator`]. Cheap to clone
/// (the connection pool is shared).
///
/// Build it with [`OpenAiGenerator::builder`]; wrap it in
/// [`Generate`](spanline_core::Generate) to use it as a pipeline stage.
#[derive(Clone)]
pub struct OpenAiGenerator {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    model: String,
    descriptor: StageDescriptor,
    headers: HeaderMap,
    client: HttpClient,
    timeouts: Timeouts,
    limits: Limits,
    stream_usage: bool,
    propagate_trace: bool,
    propagate_baggage: bool,
    has_api_key: bool,
}

impl fmt::Debug for OpenAiGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("OpenAiGenerator")
            .field("endpoint", &i.endpoint.uri.to_string())
            .field("model", &i.model)
            .field("provider", &i.descriptor.provider)
            .field(
                "api_key",
                &if i.has_api_key {
                    "<redacted>"
                } else {
                    "<none>"
                },
            )
            .field("timeouts", &i.timeouts)
            .field("limits", &i.limits)
            .finish_non_exhaustive()
    }
}

impl OpenAiGenerator {
    /// Start configuring a client of the server at `base_url` (the API root,
    /// such as `http://127.0.0.1:8000/v1`; requests go to
    /// `{base_url}/chat/completions`) for `model`.
    pub fn builder(
        base_url: impl Into<String>,
        model: impl Into<String>,
    ) -> OpenAiGeneratorBuilder {
        OpenAiGeneratorBuilder {
            base_url: base_url.into(),
            model: model.into(),
            provider: Cow::Borrowed(gen_ai::provider::OPENAI),
            stage_name: Cow::Borrowed(DEFAULT_STAGE_NAME),
            api_key: None,
            headers: Vec::new(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            stream_usage: true,
            propagate_trace: true,
            propagate_baggage: false,
        }
    }

    /// The model requested.
    pub fn model(&self) -> &str {
        &self.inner.model
    }

    /// The full chat completions URL.
    pub fn endpoint(&self) -> String {
        self.inner.endpoint.uri.to_string()
    }

    /// Send `request` and return the token stream once the server has
    /// accepted it (a success status). Waits are bounded by the configured
    /// [`Timeouts`] and by `ctx`'s deadline. Dropping the stream closes the
    /// connection, which stops generation on servers that watch for it.
    pub async fn stream(
        &self,
        request: &GenerationRequest,
        ctx: &RequestContext,
    ) -> Result<TokenStream, OpenAiError> {
        let i = &*self.inner;
        let start = Instant::now();
        if ctx.is_expired() {
            return Err(OpenAiError::DeadlineExceeded);
        }
        let capture = ctx.captures_content();
        let body = serde_json::to_vec(&wire::ChatRequest::new(
            &i.model,
            &request.messages,
            &request.params,
            i.stream_usage,
        ))
        .map_err(OpenAiError::Encode)?;
        let mut req = Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = i.endpoint.uri.clone();
        *req.headers_mut() = i.headers.clone();
        if i.propagate_trace || i.propagate_baggage {
            let carrier = TraceCarrier::from_context(ctx);
            for (name, value) in carrier.headers() {
                let wanted = if name == spanline_core::semconv::header::BAGGAGE {
                    i.propagate_baggage
                } else {
                    i.propagate_trace
                };
                if let (true, Ok(n), Ok(v)) = (
                    wanted,
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    req.headers_mut().insert(n, v);
                }
            }
        }

        let wait = Wait {
            first_byte_by: start + i.timeouts.first_byte,
            first_byte: i.timeouts.first_byte,
            idle: i.timeouts.idle,
            deadline: ctx.deadline(),
        };
        let first_byte = i.timeouts.first_byte;
        let response = transport::within(
            i.client.request(req),
            wait.first_byte_by,
            wait.deadline,
            || OpenAiError::FirstByteTimeout(first_byte),
        )
        .await?
        .map_err(|e| transport::request_error(e, i.timeouts.connect))?;

        let status = response.status();
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        let mut body = response.into_body();
        if !status.is_success() {
            let excerpt = if capture {
                transport::read_bounded(
                    &mut body,
                    i.limits.max_error_body_bytes as u64,
                    i.timeouts.idle,
                    wait.deadline,
                )
                .await
                .ok()
                .map(|(bytes, _)| error::excerpt(&bytes, ERROR_EXCERPT_BYTES))
                .filter(|t| !t.is_empty())
            } else {
                None
            };
            return Err(OpenAiError::Status {
                status: status.as_u16(),
                body: excerpt,
            });
        }
        if is_json {
            return self.whole(body, wait, ctx).await;
        }
        Ok(Reader::new(body, wait, i.limits, ctx.clone()).into_stream())
    }

    /// A non-streamed `chat.completion` body, read whole (bounded) and
    /// handed on as one piece.
    async fn whole(
        &self,
        mut body: hyper::body::Incoming,
        wait: Wait,
        ctx: &RequestContext,
    ) -> Result<TokenStream, OpenAiError> {
        let i = &*self.inner;
        let read = transport::read_bounded(
            &mut body,
            i.limits.max_response_bytes,
            i.timeouts.idle,
            wait.deadline,
        );
        let (bytes, ended) = transport::within(read, wait.first_byte_by, wait.deadline, || {
            OpenAiError::FirstByteTimeout(wait.first_byte)
        })
        .await??;
        if !ended {
            return Err(OpenAiError::ResponseTooLarge {
                limit: i.limits.max_response_bytes,
            });
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| OpenAiError::NotUtf8)?;
        let capture = ctx.captures_content();
        let mut summary = Summary::default();
        let piece = summary.absorb(stream::parse_chunk(text, capture)?, ctx, capture)?;
        let mut tokens: Vec<Result<Token, StageError>> = Vec::with_capacity(2);
        if let Some(p) = piece {
            tokens.push(Ok(Token::Text(p)));
        }
        tokens.push(Ok(summary.done_with(FinishReason::Stop)));
        Ok(Box::pin(futures_util::stream::iter(tokens)))
    }
}

const DEFAULT_STAGE_NAME: &str = "openai";

#[async_trait]
impl Generator for OpenAiGenerator {
    fn describe(&self) -> StageDescriptor {
        self.inner.descriptor.clone()
    }

    async fn generate_stream(
        &self,
        request: GenerationRequest,
        ctx: &RequestContext,
    ) -> Result<TokenStream, StageError> {
        self.stream(&request, ctx).await.map_err(StageError::from)
    }
}

/// Configures an [`OpenAiGenerator`]; made by [`OpenAiGenerator::builder`].
///
/// Finish reasons map onto [`FinishReason`]: `stop` → `Stop` (or
/// `StopSequence` when the server names the stop string that matched, as
/// vLLM's `stop_reason` does), `stop_sequence` → `StopSequence`, `length` →
/// `Length`, `content_filter` / `error` / `abort` → `Error`, and
/// `tool_calls` or anything unknown → `Stop`. A stream that ends with
/// `data: [DONE]` but no finish reason counts as `Stop`.
pub struct OpenAiGeneratorBuilder {
    base_url: String,
    model: String,
    provider: Cow<'static, str>,
    stage_name: Cow<'static, str>,
    api_key: Option<String>,
    headers: Vec<(String, String)>,
    timeouts: Timeouts,
    limits: Limits,
    stream_usage: bool,
    propagate_trace: bool,
    propagate_baggage: bool,
}

impl fmt::Debug for OpenAiGeneratorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiGeneratorBuilder")
            .field("model", &self.model)
            .field("provider", &self.provider)
            .field("stage_name", &self.stage_name)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("timeouts", &self.timeouts)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl OpenAiGeneratorBuilder {
    /// Send `Authorization: Bearer {key}`. The key is marked sensitive and
    /// never appears in spans, errors or `Debug` output. An empty key sends
    /// no header.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        self.api_key = (!key.is_empty()).then_some(key);
        self
    }

    /// Add a header to every request (for gateways: `api-key`,
    /// `OpenAI-Organization`, `X-Title`, …). Values are marked sensitive and
    /// never recorded. Checked at [`build`](Self::build).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The `gen_ai.provider.name` on spans and metrics (default `openai`;
    /// for example `vllm`, `llama.cpp`, or the router's name).
    pub fn provider(mut self, provider: impl Into<Cow<'static, str>>) -> Self {
        self.provider = provider.into();
        self
    }

    /// The stage name (the `stage` metric label; default `openai`).
    pub fn stage_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.stage_name = name.into();
        self
    }

    /// Set the connect, first-byte and idle timeouts.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Set the size limits on what is read.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Ask for usage in the stream (`stream_options.include_usage`, default
    /// on). Turn off for servers that reject `stream_options`.
    pub fn stream_usage(mut self, on: bool) -> Self {
        self.stream_usage = on;
        self
    }

    /// Send the W3C `traceparent` / `tracestate` headers (default on), so a
    /// server that traces joins the request's trace.
    pub fn propagate_trace(mut self, on: bool) -> Self {
        self.propagate_trace = on;
        self
    }

    /// Send the request attributes as W3C `baggage` (default off: they may
    /// hold user and customer ids, which a third-party API should not see).
    pub fn propagate_baggage(mut self, on: bool) -> Self {
        self.propagate_baggage = on;
        self
    }

    /// Check the configuration and build the client (no connection is made
    /// until the first request).
    pub fn build(self) -> Result<OpenAiGenerator, OpenAiError> {
        let endpoint = transport::endpoint(&self.base_url)?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("spanline/", env!("CARGO_PKG_VERSION"))),
        );
        let has_api_key = self.api_key.is_some();
        if let Some(key) = &self.api_key {
            let mut v = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| OpenAiError::InvalidApiKey)?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        for (name, value) in &self.headers {
            let invalid = || OpenAiError::InvalidHeader { name: name.clone() };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
            let mut v = HeaderValue::from_str(value).map_err(|_| invalid())?;
            v.set_sensitive(true);
            headers.append(n, v);
        }
        let client = transport::client(self.timeouts.connect, endpoint.https)?;
        let descriptor = StageDescriptor::new(self.stage_name, StageKind::Generate)
            .model(self.model.clone())
            .provider(self.provider)
            .server(endpoint.host.clone(), endpoint.port);
        Ok(OpenAiGenerator {
            inner: Arc::new(Inner {
                endpoint,
                model: self.model,
                descriptor,
                headers,
                client,
                timeouts: self.timeouts,
                limits: self.limits,
                stream_usage: self.stream_usage,
                propagate_trace: self.propagate_trace,
                propagate_baggage: self.propagate_baggage,
                has_api_key,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_a_remote_chat_stage() {
        let g = OpenAiGenerator::builder("http://10.1.2.3:8000/v1", "m")
            .provider("vllm")
            .build()
            .unwrap();
        let d = g.describe();
        assert_eq!(d.kind, StageKind::Generate);
        assert_eq!(d.model.as_deref(), Some("m"));
        assert_eq!(d.provider.as_deref(), Some("vllm"));
        assert_eq!(d.server, Some(("10.1.2.3".into(), 8000)));
        assert!(d.remote);
        assert_eq!(d.span_name(), "chat m");
        assert_eq!(g.endpoint(), "http://10.1.2.3:8000/v1/chat/completions");
    }

    #[test]
    fn debug_hides_secrets() {
        let b = OpenAiGenerator::builder("http://h/v1", "m")
            .api_key("sk-SECRET")
            .header("x-api-key", "HEADER-SECRET");
        let text = format!("{b:?}");
        assert!(!text.contains("SECRET"), "{text}");
        let g = b.build().unwrap();
        let text = format!("{g:?}");
        assert!(!text.contains("SECRET"), "{text}");
    }

    #[test]
    fn bad_configuration_is_refused_at_build() {
        let e = OpenAiGenerator::builder("ftp://h", "m")
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), spanline_core::ErrorKind::InvalidInput);
        let e = OpenAiGenerator::builder("http://h/v1", "m")
            .header("bad name", "v")
            .build()
            .unwrap_err();
        assert!(matches!(e, OpenAiError::InvalidHeader { .. }));
        let e = OpenAiGenerator::builder("http://h/v1", "m")
            .api_key("line\nbreak")
            .build()
            .unwrap_err();
        assert!(matches!(e, OpenAiError::InvalidApiKey));
    }
}
