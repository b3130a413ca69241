//! Turning a streamed response body into a [`TokenStream`].

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::FutureExt as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use opentelemetry::KeyValue;
use spanline_core::semconv::gen_ai;
use spanline_core::{FinishReason, RequestContext, StageError, Token, TokenStream};
use tokio::time::Instant;

use super::config::Limits;
use super::error::OpenAiError;
use super::sse::{SseDecoder, SseError, SseEvent};
use super::transport::{body_error, within};
use super::wire::{ChatChunk, Usage};

/// When each read must finish.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wait {
    /// The first body bytes must have arrived by then.
    pub(crate) first_byte_by: Instant,
    /// The first-byte timeout (for the error).
    pub(crate) first_byte: Duration,
    /// The longest gap between body pieces.
    pub(crate) idle: Duration,
    /// The request's deadline.
    pub(crate) deadline: Option<Instant>,
}

/// What a chunk told us about the response as a whole.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    pieces: u64,
    model_seen: bool,
    id_seen: bool,
}

impl Summary {
    /// Absorb one parsed chunk: its text (if any) is returned.
    pub(crate) fn absorb(
        &mut self,
        chunk: ChatChunk,
        ctx: &RequestContext,
        capture: bool,
    ) -> Result<Option<String>, OpenAiError> {
        if chunk.is_error() {
            return Err(OpenAiError::Server {
                message: if capture {
                    chunk
                        .error_message()
                        .map(|m| super::error::excerpt(m.as_bytes(), 512))
                } else {
                    None
                },
            });
        }
        if !self.model_seen
            && let Some(model) = chunk.model.as_deref().filter(|m| !m.is_empty())
        {
            self.model_seen = true;
            ctx.set_attribute(KeyValue::new(gen_ai::RESPONSE_MODEL, model.to_owned()));
        }
        if !self.id_seen
            && let Some(id) = chunk.id.as_deref().filter(|m| !m.is_empty())
        {
            self.id_seen = true;
            ctx.set_attribute(KeyValue::new(gen_ai::RESPONSE_ID, id.to_owned()));
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        let mut text = None;
        if let Some(choice) = chunk.first_choice() {
            if let Some(reason) = choice.finish() {
                self.finish = Some(reason);
            }
            if let Some(t) = choice.text().filter(|t| !t.is_empty()) {
                self.pieces += 1;
                text = Some(t.to_owned());
            }
        }
        Ok(text)
    }

    /// The closing token. `None` when no finish reason was seen.
    pub(crate) fn done(&self) -> Option<Token> {
        self.finish
            .map(|finish_reason| self.done_with(finish_reason))
    }

    /// The closing token with `finish_reason` when the server gave none.
    pub(crate) fn done_with(&self, default: FinishReason) -> Token {
        Token::Done {
            usage: Usage::resolve(self.usage, self.pieces),
            finish_reason: self.finish.unwrap_or(default),
        }
    }
}

/// Parse event data as a chunk; the parser's message (which may quote the
/// data) only with capture on.
pub(crate) fn parse_chunk(data: &str, capture: bool) -> Result<ChatChunk, OpenAiError> {
    serde_json::from_str(data).map_err(|e| OpenAiError::Malformed {
        detail: if capture {
            e.to_string()
        } else {
            let what = match e.classify() {
                serde_json::error::Category::Io => "I/O",
                serde_json::error::Category::Syntax => "JSON syntax",
                serde_json::error::Category::Data => "unexpected JSON shape",
                serde_json::error::Category::Eof => "truncated JSON",
            };
            format!("{what} error at line {} column {}", e.line(), e.column())
        },
    })
}

/// The reader behind the stream.
pub(crate) struct Reader {
    body: Incoming,
    decoder: SseDecoder,
    events: VecDeque<SseEvent>,
    pending: VecDeque<Token>,
    wait: Wait,
    body_started: bool,
    received: u64,
    limits: Limits,
    ctx: RequestContext,
    capture: bool,
    summary: Summary,
    eof: bool,
    finished: bool,
}

impl Reader {
    pub(crate) fn new(body: Incoming, wait: Wait, limits: Limits, ctx: RequestContext) -> Self {
        Reader {
            body,
            decoder: SseDecoder::new(limits.max_line_bytes),
            events: VecDeque::new(),
            pending: VecDeque::new(),
            wait,
            body_started: false,
            received: 0,
            limits,
            capture: ctx.captures_content(),
            ctx,
            summary: Summary::default(),
            eof: false,
            finished: false,
        }
    }

    /// The token stream; dropping it drops the body and so the connection.
    pub(crate) fn into_stream(self) -> TokenStream {
        Box::pin(futures_util::stream::unfold(self, |mut r| async move {
            let item = r.next().await?;
            Some((item.map_err(StageError::from), r))
        }))
    }

    async fn next(&mut self) -> Option<Result<Token, OpenAiError>> {
        loop {
            if let Some(t) = self.pending.pop_front() {
                return Some(Ok(t));
            }
            if self.finished {
                return None;
            }
            let step = if let Some(event) = self.events.pop_front() {
                self.on_event(event)
            } else if self.eof {
                // Ended without [DONE]: fine if the server said why it
                // stopped, truncated otherwise.
                match self.summary.done() {
                    Some(done) => {
                        self.finished = true;
                        self.pending.push_back(done);
                        Ok(())
                    }
                    None => Err(OpenAiError::Truncated),
                }
            } else {
                self.read().await
            };
            if let Err(e) = step {
                self.finished = true;
                self.pending.clear();
                return Some(Err(e));
            }
        }
    }

    fn on_event(&mut self, event: SseEvent) -> Result<(), OpenAiError> {
        let data = event.data.trim();
        if event.event.as_deref() == Some("error") {
            return Err(OpenAiError::Server {
                message: self
                    .capture
                    .then(|| super::error::excerpt(data.as_bytes(), 512)),
            });
        }
        if data == "[DONE]" {
            self.finished = true;
            self.pending
                .push_back(self.summary.done_with(FinishReason::Stop));
            self.drain_ready();
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let chunk = parse_chunk(data, self.capture)?;
        if let Some(text) = self.summary.absorb(chunk, &self.ctx, self.capture)? {
            self.pending.push_back(Token::Text(text));
        }
        Ok(())
    }

    async fn read(&mut self) -> Result<(), OpenAiError> {
        let w = self.wait;
        let started = self.body_started;
        let limit = if started {
            Instant::now() + w.idle
        } else {
            w.first_byte_by
        };
        let frame = within(self.body.frame(), limit, w.deadline, || {
            if started {
                OpenAiError::IdleTimeout(w.idle)
            } else {
                OpenAiError::FirstByteTimeout(w.first_byte)
            }
        })
        .await?;
        match frame {
            None => {
                self.eof = true;
                self.decoder
                    .finish(&mut self.events)
                    .map_err(|e| sse_error(e, self.limits))
            }
            Some(Err(e)) => Err(body_error(e)),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    return Ok(()); // trailers
                };
                if data.is_empty() {
                    return Ok(());
                }
                self.body_started = true;
                self.received = self.received.saturating_add(data.len() as u64);
                if self.received > self.limits.max_response_bytes {
                    return Err(OpenAiError::ResponseTooLarge {
                        limit: self.limits.max_response_bytes,
                    });
                }
                self.decoder
                    .feed(&data, &mut self.events)
                    .map_err(|e| sse_error(e, self.limits))
            }
        }
    }

    /// After `[DONE]`, consume what has already arrived (the chunked
    /// terminator) without waiting, so the connection can be reused.
    fn drain_ready(&mut self) {
        for _ in 0..4 {
            match self.body.frame().now_or_never() {
                Some(Some(Ok(_))) => continue,
                _ => break,
            }
        }
    }
}

fn sse_error(e: SseError, limits: Limits) -> OpenAiError {
    match e {
        SseError::TooLong => OpenAiError::LineTooLong {
            limit: limits.max_line_bytes,
        },
        SseError::NotUtf8 => OpenAiError::NotUtf8,
    }
}
