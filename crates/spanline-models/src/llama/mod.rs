//! A streaming generator for GGUF llama-family models (SmolLM2 and
//! relatives) on candle's quantised CPU kernels.

mod gguf;
mod model;
mod text;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama;
use futures_util::stream;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, SpanKind};
use spanline_core::semconv::{gen_ai, spanline};
use spanline_core::{
    FinishReason, GenerationRequest, Generator, RequestContext, SamplingParams, StageDescriptor,
    StageError, StageKind, Telemetry, Token, TokenStream, TokenUsage,
};
use tokenizers::Tokenizer;
use tokio::sync::mpsc;

use crate::embed::PROVIDER;
use crate::error::ModelError;
use crate::resolve::{ModelResolver, SMOLLM2_135M_INSTRUCT};
use crate::threads::InferenceThreads;

pub use text::ChatFormat;
use text::{Filtered, StopFilter};

/// Tokens of recent context the repetition penalty looks at.
const REPEAT_WINDOW: usize = 64;
/// Pieces buffered between the model thread and the consumer.
const STREAM_BUFFER: usize = 64;

/// How to load a GGUF model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Convert weights whose quantisation has no fast CPU kernel (Q4_1) to
    /// one that has (Q8_0), caching the converted file here. `None` loads
    /// the file as it is.
    pub requantize_cache: Option<PathBuf>,
    /// Keep a dense f32 copy of the layer weights for prompts (prefill) when
    /// it takes at most this many bytes; 0 never does. candle's quantised
    /// CPU matmul works a token at a time, dense GEMM works on the whole
    /// prompt: about 4× faster prefill here, for 4 bytes per weight of
    /// memory (425 MB for SmolLM2-135M). Decoding always uses the quantised
    /// weights. Default: [`LoadOptions::DEFAULT_DENSE_PREFILL_LIMIT`].
    pub dense_prefill_limit: u64,
}

impl LoadOptions {
    /// The default cap on the dense prefill copy: 2 GiB (models up to
    /// about 0.5 B parameters get it).
    pub const DEFAULT_DENSE_PREFILL_LIMIT: u64 = 2 << 30;

    /// Requantise into `resolver`'s cache (`…/requantized`).
    pub fn cached_in(resolver: &ModelResolver) -> Self {
        LoadOptions {
            requantize_cache: Some(resolver.cache_path().join("requantized")),
            ..LoadOptions::default()
        }
    }
}

impl Default for LoadOptions {
    /// Load the file as it is, with the default dense prefill cap.
    fn default() -> Self {
        LoadOptions {
            requantize_cache: None,
            dense_prefill_limit: Self::DEFAULT_DENSE_PREFILL_LIMIT,
        }
    }
}

/// A GGUF llama-family chat model as a streaming [`Generator`].
///
/// - tokenizer built from the GGUF metadata (byte-level BPE), chat prompt
///   from the model's template ([`ChatFormat`]);
/// - sampling: temperature (0 = greedy), top-k, top-p, seed, repetition
///   penalty over the last 64 tokens, max tokens, stop sequences (never
///   shown, even when split across tokens);
/// - two child spans under the generate stage: `prefill` (the prompt's
///   forward pass; `gen_ai.usage.input_tokens`) and `decode` (token by
///   token; `gen_ai.usage.output_tokens`, finish reason); time to first
///   token and per output token are measured by the
///   [`Generate`](spanline_core::Generate) adapter from this stream;
/// - the prompt runs through a dense f32 copy of the layer weights when
///   [`LoadOptions::dense_prefill_limit`] allows (about 4× faster prefill on
///   CPU), every later token through the quantised weights;
/// - requests share the weights and each has its own KV cache, so they may
///   run concurrently up to the inference thread count;
/// - dropping the stream stops generation at the next token; the request
///   deadline stops it with a typed error.
#[derive(Clone)]
pub struct LlamaGenerator {
    inner: Arc<LlamaModel>,
    name: Arc<str>,
    threads: InferenceThreads,
    telemetry: Option<Telemetry>,
}

struct LlamaModel {
    weights: model::Model,
    tokenizer: Tokenizer,
    eos: Vec<u32>,
    format: ChatFormat,
    context_length: usize,
    path: PathBuf,
}

impl std::fmt::Debug for LlamaGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaGenerator")
            .field("model", &self.name)
            .field("format", &self.inner.format)
            .field("context_length", &self.inner.context_length)
            .field("dense_prefill_bytes", &self.dense_prefill_bytes())
            .finish()
    }
}

impl LlamaGenerator {
    /// SmolLM2-135M-Instruct, found (or fetched) by `resolver`, requantised
    /// to Q8_0 in its cache, on the shared inference threads.
    pub fn smollm2(resolver: &ModelResolver) -> Result<Self, ModelError> {
        let model = resolver.resolve(&SMOLLM2_135M_INSTRUCT)?;
        Self::load(
            &model.file(SMOLLM2_135M_INSTRUCT.files[0]),
            SMOLLM2_135M_INSTRUCT.name,
            &LoadOptions::cached_in(resolver),
            InferenceThreads::shared()?,
        )
    }

    /// Load the GGUF file at `path`, reporting it as `name` on spans.
    pub fn load(
        path: &Path,
        name: impl Into<Arc<str>>,
        options: &LoadOptions,
        threads: InferenceThreads,
    ) -> Result<Self, ModelError> {
        let path = match &options.requantize_cache {
            Some(cache) => gguf::fast_copy(path, cache)?.0,
            None => path.to_path_buf(),
        };
        let (content, mut reader) = gguf::read_content(&path)?;
        let meta = gguf::chat_metadata(&content, &path)?;
        let weights = model::Model::from_gguf(&content, &mut reader, options.dense_prefill_limit)
            .map_err(|e| ModelError::corrupt(&path, e))?;
        let context_length = meta
            .context_length
            .unwrap_or(quantized_llama::MAX_SEQ_LEN)
            .min(quantized_llama::MAX_SEQ_LEN);
        Ok(LlamaGenerator {
            inner: Arc::new(LlamaModel {
                weights,
                tokenizer: meta.tokenizer,
                eos: meta.eos,
                format: ChatFormat::detect(meta.chat_template.as_deref()),
                context_length,
                path,
            }),
            name: name.into(),
            threads,
            telemetry: None,
        })
    }

    /// Emit the prefill and decode spans through `telemetry`. Without this
    /// they go where the request's own spans go: the telemetry of the
    /// pipeline running it ([`RequestContext::telemetry`]), or the global
    /// provider when the generator is called outside any pipeline.
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Run on `threads` instead.
    pub fn threads(mut self, threads: InferenceThreads) -> Self {
        self.threads = threads;
        self
    }

    /// The prompt the model reads for `request`.
    pub fn render_prompt(&self, request: &GenerationRequest) -> String {
        self.inner.format.render(&request.messages)
    }

    /// The token ids `text` encodes to (special tokens in the text, such
    /// as chat markers, are one id each).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.inner.encode(text)
    }

    /// Bytes held by the dense f32 prefill copy of the layer weights (0
    /// when prompts run through the quantised weights; see
    /// [`LoadOptions::dense_prefill_limit`]).
    pub fn dense_prefill_bytes(&self) -> u64 {
        self.inner.weights.dense_bytes()
    }

    /// How many tokens `text` encodes to.
    pub fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        Ok(self.inner.encode(text)?.len())
    }

    /// The GGUF file the weights were loaded from (the requantised copy
    /// when one was made).
    pub fn model_path(&self) -> &Path {
        &self.inner.path
    }

    /// The largest prompt plus output, in tokens.
    pub fn context_length(&self) -> usize {
        self.inner.context_length
    }

    /// The prompt format in use.
    pub fn chat_format(&self) -> ChatFormat {
        self.inner.format
    }
}

impl LlamaModel {
    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(|e| ModelError::InvalidInput(format!("tokenizer: {e}")))?
            .get_ids()
            .to_vec())
    }
}

fn check_params(p: &SamplingParams) -> Result<(), ModelError> {
    let bad = |what: &str| Err(ModelError::InvalidInput(what.to_string()));
    if p.max_tokens == 0 {
        return bad("max_tokens must be at least 1");
    }
    if !p.temperature.is_finite() || p.temperature < 0.0 {
        return bad("temperature must be a finite number ≥ 0");
    }
    if !(p.top_p > 0.0 && p.top_p <= 1.0) {
        return bad("top_p must be in (0, 1]");
    }
    if p.top_k == Some(0) {
        return bad("top_k must be at least 1");
    }
    if !p.repetition_penalty.is_finite() || p.repetition_penalty <= 0.0 {
        return bad("repetition_penalty must be a finite number > 0");
    }
    Ok(())
}

fn sampler(p: &SamplingParams) -> LogitsProcessor {
    let temperature = f64::from(p.temperature);
    let top_p = (p.top_p < 1.0).then_some(f64::from(p.top_p));
    let sampling = match (temperature <= 0.0, p.top_k, top_p) {
        (true, _, _) => Sampling::ArgMax,
        (false, Some(k), Some(p)) => Sampling::TopKThenTopP {
            k: k as usize,
            p,
            temperature,
        },
        (false, Some(k), None) => Sampling::TopK {
            k: k as usize,
            temperature,
        },
        (false, None, Some(p)) => Sampling::TopP { p, temperature },
        (false, None, None) => Sampling::All { temperature },
    };
    let seed = p.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    LogitsProcessor::from_sampling(seed, sampling)
}

type Sender = mpsc::Sender<Result<Token, StageError>>;

/// Why the decode loop ended early.
enum Halt {
    /// The consumer dropped the stream.
    Cancelled,
    /// A failure to report.
    Failed(StageError),
}

impl From<ModelError> for Halt {
    fn from(e: ModelError) -> Self {
        Halt::Failed(e.into())
    }
}

impl From<candle_core::Error> for Halt {
    fn from(e: candle_core::Error) -> Self {
        Halt::Failed(ModelError::from(e).into())
    }
}

struct Run<'a> {
    model: &'a LlamaModel,
    telemetry: &'a Telemetry,
    ctx: &'a RequestContext,
    tx: &'a Sender,
}

impl Run<'_> {
    fn span(&self, name: &'static str, attributes: Vec<KeyValue>) -> RequestContext {
        self.ctx.start_span(
            self.telemetry,
            SpanBuilder::from_name(name)
                .with_kind(SpanKind::Internal)
                .with_attributes(attributes),
        )
    }

    fn send(&self, token: Token) -> Result<(), Halt> {
        self.tx
            .blocking_send(Ok(token))
            .map_err(|_| Halt::Cancelled)
    }

    fn sample(
        &self,
        logits: &Tensor,
        sampler: &mut LogitsProcessor,
        params: &SamplingParams,
        history: &[u32],
    ) -> Result<u32, Halt> {
        let logits = logits.squeeze(0)?;
        let logits = if params.repetition_penalty == 1.0 {
            logits
        } else {
            let from = history.len().saturating_sub(REPEAT_WINDOW);
            candle_transformers::utils::apply_repeat_penalty(
                &logits,
                params.repetition_penalty,
                &history[from..],
            )?
        };
        // NaN propagates through the sum: one reduction, no copy per token.
        if logits.sum_all()?.to_scalar::<f32>()?.is_nan() {
            return Err(ModelError::Inference("the model produced NaN logits".into()).into());
        }
        Ok(sampler.sample(&logits)?)
    }

    /// Prefill, then decode until end of sequence, a stop sequence, the
    /// token limit, the deadline or cancellation.
    fn generate(&self, request: &GenerationRequest) -> Result<(), Halt> {
        // `generate_stream` checked the parameters before spawning this.
        let params = &request.params;
        let prompt = self.model.format.render(&request.messages);
        let mut tokens = self.model.encode(&prompt)?;
        let input_tokens = tokens.len();
        if input_tokens == 0 {
            return Err(ModelError::InvalidInput("the prompt is empty".into()).into());
        }
        if input_tokens >= self.model.context_length {
            return Err(ModelError::InvalidInput(format!(
                "the prompt has {input_tokens} tokens; the model's context holds {}",
                self.model.context_length
            ))
            .into());
        }
        let budget = (params.max_tokens as usize).min(self.model.context_length - input_tokens);
        let mut cache = self.model.weights.cache();
        let mut sampler = sampler(params);

        let prefill = self.span(
            spanline::SPAN_PREFILL,
            vec![KeyValue::new(
                gen_ai::USAGE_INPUT_TOKENS,
                input_tokens as i64,
            )],
        );
        let first = Tensor::new(tokens.as_slice(), &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .and_then(|t| self.model.weights.forward(&mut cache, &t, 0))
            .map_err(Halt::from)
            .and_then(|logits| self.sample(&logits, &mut sampler, params, &tokens));
        end(&prefill, first.as_ref().err());
        let mut next = first?;

        let decode = self.span(spanline::SPAN_DECODE, Vec::new());
        let result = self.decode(
            &mut cache,
            &mut sampler,
            params,
            &mut tokens,
            &mut next,
            budget,
        );
        let output_tokens = tokens.len() - input_tokens;
        decode.set_attribute(KeyValue::new(
            gen_ai::USAGE_OUTPUT_TOKENS,
            output_tokens as i64,
        ));
        if let Ok(reason) = &result {
            decode.set_attribute(KeyValue::new(
                gen_ai::RESPONSE_FINISH_REASONS,
                reason.as_str(),
            ));
        }
        end(&decode, result.as_ref().err());
        let finish_reason = result?;
        self.send(Token::Done {
            usage: TokenUsage {
                input_tokens: input_tokens as u64,
                output_tokens: output_tokens as u64,
            },
            finish_reason,
        })
    }

    fn decode(
        &self,
        cache: &mut model::Cache,
        sampler: &mut LogitsProcessor,
        params: &SamplingParams,
        tokens: &mut Vec<u32>,
        next: &mut u32,
        budget: usize,
    ) -> Result<FinishReason, Halt> {
        let mut stops = StopFilter::new(&params.stop);
        let mut detok = self.model.tokenizer.decode_stream(true);
        let mut generated = 0;
        loop {
            if self.model.eos.contains(next) {
                self.flush(&mut stops)?;
                return Ok(FinishReason::Stop);
            }
            tokens.push(*next);
            generated += 1;
            let piece = detok
                .step(*next)
                .map_err(|e| ModelError::Inference(format!("detokenizer: {e}")))?;
            if let Some(piece) = piece {
                match stops.push(&piece) {
                    Filtered::Emit(t) if t.is_empty() => {}
                    Filtered::Emit(t) => self.send(Token::Text(t))?,
                    Filtered::Stop(t) => {
                        if !t.is_empty() {
                            self.send(Token::Text(t))?;
                        }
                        return Ok(FinishReason::StopSequence);
                    }
                }
            }
            if generated >= budget {
                self.flush(&mut stops)?;
                return Ok(FinishReason::Length);
            }
            if self.tx.is_closed() {
                return Err(Halt::Cancelled);
            }
            if self.ctx.is_expired() {
                return Err(Halt::Failed(StageError::deadline_exceeded()));
            }
            let input = Tensor::new(&[*next], &Device::Cpu)?.unsqueeze(0)?;
            let logits = self
                .model
                .weights
                .forward(cache, &input, tokens.len() - 1)?;
            *next = self.sample(&logits, sampler, params, tokens)?;
        }
    }

    fn flush(&self, stops: &mut StopFilter) -> Result<(), Halt> {
        let rest = stops.finish();
        if rest.is_empty() {
            Ok(())
        } else {
            self.send(Token::Text(rest))
        }
    }
}

/// End a child span, recording why it failed.
fn end(span: &RequestContext, halt: Option<&Halt>) {
    match halt {
        Some(Halt::Failed(e)) => span.record_error(e),
        Some(Halt::Cancelled) => span.record_error(&StageError::cancelled()),
        None => {}
    }
    span.end_span();
}

#[async_trait]
impl Generator for LlamaGenerator {
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("generate", StageKind::Generate)
            .model(self.name.to_string())
            .provider(PROVIDER)
    }

    async fn generate_stream(
        &self,
        request: GenerationRequest,
        ctx: &RequestContext,
    ) -> Result<TokenStream, StageError> {
        check_params(&request.params)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let model = self.inner.clone();
        let telemetry = (self.telemetry.as_ref())
            .or(ctx.telemetry())
            .cloned()
            .unwrap_or_else(Telemetry::global);
        self.threads.spawn(ctx, move |ctx| {
            let run = Run {
                model: &model,
                telemetry: &telemetry,
                ctx,
                tx: &tx,
            };
            if let Err(Halt::Failed(e)) = run.generate(&request) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Ok(Box::pin(stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }
}
